-- 002_planned.sql: tables for the stages that follow ingest (tokenizer, KG,
-- trainer, daemon). Their columns are the plan in docs/store.md; later
-- migrations may add columns (never drop data).

-- WordPiece vocabularies; pieces are stored in id order as vocab.txt text.
-- At most one row has active = 1 (the vocabulary commands use by default).
CREATE TABLE vocabularies (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    cased          INTEGER NOT NULL CHECK (cased IN (0, 1)),
    size           INTEGER NOT NULL,
    pieces         TEXT    NOT NULL,             -- vocab.txt contents, one piece a line
    content_hash   BLOB    NOT NULL,             -- XXH3-128 of pieces
    max_word_chars INTEGER NOT NULL DEFAULT 100, -- longer words become [UNK]
    origin         TEXT    NOT NULL,             -- 'import:PATH' or 'train:{json config}'
    active         INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    created_at     INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX vocabularies_one_active ON vocabularies(active) WHERE active = 1;

-- Token ids of one document under one vocabulary (layouts in docs/store.md,
-- in the spirit of Megatron's .bin/.idx: random access by document).
CREATE TABLE doc_tokens (
    doc_id      INTEGER NOT NULL REFERENCES documents(id),
    vocab_id    INTEGER NOT NULL REFERENCES vocabularies(id),
    layout      INTEGER NOT NULL,                -- 1: uint16 ids, 2: uint32 ids
    n_tokens    INTEGER NOT NULL,
    tokens      BLOB    NOT NULL,                -- (n_tokens) ids, little-endian
    sent_ends   BLOB    NOT NULL,                -- (n_sentences) uint32 LE token offsets
    word_starts BLOB    NOT NULL,                -- ceil(n_tokens / 8) bytes, bit i (LSB first) = token i starts a word
    PRIMARY KEY (vocab_id, doc_id)
) STRICT, WITHOUT ROWID;

-- Knowledge graph (docs/store.md).
-- Imported files, for reports and idempotent re-imports.
CREATE TABLE kg_files (
    id           INTEGER PRIMARY KEY,
    path         TEXT    NOT NULL,
    content_hash BLOB    NOT NULL,               -- XXH3-128 of the file
    kind         TEXT    NOT NULL,               -- triples, names, relation-names
    options      TEXT    NOT NULL,               -- split, format, lang: what shapes the result
    status       TEXT    NOT NULL CHECK (status IN ('running', 'complete', 'partial')),
    error        TEXT,
    triples      INTEGER NOT NULL DEFAULT 0,     -- new triples
    names        INTEGER NOT NULL DEFAULT 0,     -- labels, aliases, descriptions set
    bad_lines    INTEGER NOT NULL DEFAULT 0,
    imported_at  INTEGER NOT NULL,
    UNIQUE (content_hash, kind, options)
) STRICT;
CREATE TABLE kg_entities (
    id          INTEGER PRIMARY KEY,
    ext_id      TEXT    NOT NULL UNIQUE,         -- Freebase mid, synset offset, IRI, _:blank
    label       TEXT,
    description TEXT
) STRICT;
CREATE TABLE kg_relations (
    id          INTEGER PRIMARY KEY,
    ext_id      TEXT    NOT NULL UNIQUE,
    label       TEXT
) STRICT;
CREATE TABLE kg_triples (
    head        INTEGER NOT NULL REFERENCES kg_entities(id),
    relation    INTEGER NOT NULL REFERENCES kg_relations(id),
    tail        INTEGER NOT NULL REFERENCES kg_entities(id),
    split       TEXT    NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'valid', 'test')),
    file_id     INTEGER NOT NULL REFERENCES kg_files(id),
    PRIMARY KEY (head, relation, tail, split)
) STRICT, WITHOUT ROWID;
CREATE INDEX kg_triples_tail ON kg_triples(tail);
-- Surface forms of entities, normalized as the corpus text is (NFKC, white
-- space collapsed); the label is an alias too.
CREATE TABLE kg_aliases (
    alias       TEXT    NOT NULL,
    entity_id   INTEGER NOT NULL REFERENCES kg_entities(id),
    PRIMARY KEY (alias, entity_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX kg_aliases_entity ON kg_aliases(entity_id);
-- Entity mentions found by kiln kg link in the tokenized corpus: tokens
-- [tok_start, tok_end) of the document's token blob under vocab_id.
CREATE TABLE kg_mentions (
    vocab_id    INTEGER NOT NULL REFERENCES vocabularies(id),
    doc_id      INTEGER NOT NULL REFERENCES documents(id),
    tok_start   INTEGER NOT NULL,
    tok_end     INTEGER NOT NULL,
    entity_id   INTEGER NOT NULL REFERENCES kg_entities(id),
    score       REAL    NOT NULL,                -- 1 / candidates of the alias, scaled by degree share
    PRIMARY KEY (vocab_id, doc_id, tok_start)
) STRICT, WITHOUT ROWID;
CREATE INDEX kg_mentions_entity ON kg_mentions(entity_id);
-- Documents linked under a vocabulary, and the alias generation used: an
-- import that adds aliases bumps kg_meta.alias_generation and the documents
-- are linked again.
CREATE TABLE kg_linked (
    vocab_id    INTEGER NOT NULL REFERENCES vocabularies(id),
    doc_id      INTEGER NOT NULL REFERENCES documents(id),
    generation  INTEGER NOT NULL,
    PRIMARY KEY (vocab_id, doc_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE kg_meta (
    key         TEXT    PRIMARY KEY,
    value       INTEGER NOT NULL
) STRICT;
INSERT INTO kg_meta(key, value) VALUES ('alias_generation', 0);
CREATE TABLE kg_embeddings (
    id          INTEGER PRIMARY KEY,
    model       TEXT    NOT NULL,                -- transe
    dim         INTEGER NOT NULL,
    config      TEXT    NOT NULL,                -- JSON of the training options and results
    n_entities  INTEGER NOT NULL,
    n_relations INTEGER NOT NULL,
    entity_ids  BLOB    NOT NULL,                -- (n_entities) int64 LE: kg_entities.id of each row
    relation_ids BLOB   NOT NULL,                -- (n_relations) int64 LE
    entities    BLOB    NOT NULL,                -- (n_entities, dim) float32 LE
    relations   BLOB    NOT NULL,                -- (n_relations, dim) float32 LE
    valid_mrr   REAL,
    test_mrr    REAL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Training runs, jobs, checkpoints and metrics.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    name        TEXT,
    kind        TEXT    NOT NULL,                -- train, vocab, kg-embed
    config      TEXT    NOT NULL,                -- JSON
    priority    INTEGER NOT NULL DEFAULT 0,
    state       TEXT    NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'paused', 'done', 'failed', 'cancelled')),
    step        INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE TABLE checkpoints (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER REFERENCES jobs(id),
    step        INTEGER NOT NULL,
    path        TEXT    NOT NULL,
    val_loss    REAL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE TABLE metrics (
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    step        INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    value       REAL    NOT NULL,
    PRIMARY KEY (job_id, step, name)
) STRICT, WITHOUT ROWID;
