-- 001_corpus.sql: sources and documents (the ingested corpus).
-- Applied by store/ inside one transaction; PRAGMA user_version is set to 1 after it.

-- One row per ingested file (a plain file, a compressed file or an archive).
-- content_hash: XXH3-128 of the file's raw bytes; a complete source with the
-- same hash is not ingested again.
CREATE TABLE sources (
    id            INTEGER PRIMARY KEY,
    path          TEXT    NOT NULL,              -- as given, made absolute
    content_hash  BLOB    NOT NULL UNIQUE,       -- 16 bytes, XXH3-128 of the file
    size          INTEGER NOT NULL,              -- bytes on disk
    format        TEXT    NOT NULL DEFAULT '',   -- detected or forced: text, jsonl, mediawiki, mixed
    status        TEXT    NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'complete', 'partial', 'failed')),
    error         TEXT,                          -- why partial/failed; warnings summary
    pid           INTEGER,                       -- ingesting process while running
    documents     INTEGER NOT NULL DEFAULT 0,    -- documents stored from this source
    duplicates    INTEGER NOT NULL DEFAULT 0,    -- documents dropped as already stored
    skipped       INTEGER NOT NULL DEFAULT 0,    -- records skipped (bad, empty, redirects, limits)
    bytes_in      INTEGER NOT NULL DEFAULT 0,    -- uncompressed bytes read
    sentences     INTEGER NOT NULL DEFAULT 0,    -- sentences of the stored documents
    text_bytes    INTEGER NOT NULL DEFAULT 0,    -- bytes of the stored (normalized) text
    started_at    INTEGER NOT NULL,              -- unix seconds
    finished_at   INTEGER
) STRICT;

-- One row per stored document. text is normalized UTF-8; sentence i is
-- text[sent_ends[i-1] .. sent_ends[i]) with sent_ends[-1] = 0, where sent_ends
-- is a blob of n_sentences little-endian uint32 byte offsets (end exclusive).
-- Sentences are separated in text by a single '\n' (so the offsets of sentence
-- i > 0 start one byte after the previous end).
CREATE TABLE documents (
    id            INTEGER PRIMARY KEY,
    source_id     INTEGER NOT NULL REFERENCES sources(id),
    entry         TEXT    NOT NULL DEFAULT '',   -- archive member name, '' for a plain file
    ext_id        TEXT,                          -- id in the source (page id, JSON id, line number)
    title         TEXT,
    url           TEXT,
    content_hash  BLOB    NOT NULL UNIQUE,       -- XXH3-128 of text (deduplication key)
    n_sentences   INTEGER NOT NULL,
    n_bytes       INTEGER NOT NULL,              -- length of text in bytes
    text          TEXT    NOT NULL,
    sent_ends     BLOB    NOT NULL               -- (n_sentences) uint32 LE
) STRICT;
CREATE INDEX documents_source ON documents(source_id);
