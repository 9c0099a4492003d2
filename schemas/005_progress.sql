-- 005_progress.sql: per-vocabulary progress of tokenizing and linking, and
-- the corpus's piece counts, kept as documents are tokenized and linked
-- (issue #18), so that work on new documents costs what they hold, not what
-- the store holds: kiln tokenize, kiln kg link and the daemon start after
-- the documents already done instead of scanning from id 0, and kiln kg link
-- reads the piece counts instead of recounting every token.
--
-- Documents are never deleted and their ids only grow (a document stored
-- later has a larger id), so "every document up to id N" stays true when
-- documents are added.

-- One row per vocabulary (made by the trigger below for new ones).
CREATE TABLE vocab_progress (
    vocab_id          INTEGER PRIMARY KEY REFERENCES vocabularies(id),
    -- every document with id <= tokenized_through has tokens under vocab_id
    tokenized_through INTEGER NOT NULL DEFAULT 0,
    -- doc_tokens rows of vocab_id and the sum of their n_tokens (triggers)
    docs              INTEGER NOT NULL DEFAULT 0,
    tokens            INTEGER NOT NULL DEFAULT 0,
    -- 1: docs, tokens and token_counts are exact; 0: not counted yet (a
    -- vocabulary tokenized before this migration; counted once on first use)
    counted           INTEGER NOT NULL DEFAULT 1 CHECK (counted IN (0, 1)),
    -- the sum of token_counts (equals tokens when every writer added its counts)
    counted_tokens    INTEGER NOT NULL DEFAULT 0,
    -- every document with id <= linked_through has tokens (linked_through <=
    -- tokenized_through) and is linked at alias generation linked_generation
    linked_through    INTEGER NOT NULL DEFAULT 0,
    linked_generation INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Occurrences of each piece id in the vocabulary's doc_tokens, 1024 pieces a
-- row: counts is 1024 uint64 LE, piece chunk * 1024 + i at byte 8i. Rows of
-- chunks with no occurrence may be absent.
CREATE TABLE token_counts (
    vocab_id    INTEGER NOT NULL REFERENCES vocabularies(id),
    chunk       INTEGER NOT NULL,
    counts      BLOB    NOT NULL,
    PRIMARY KEY (vocab_id, chunk)
) STRICT;

INSERT INTO vocab_progress(vocab_id, counted)
    SELECT v.id, NOT EXISTS (SELECT 1 FROM doc_tokens t WHERE t.vocab_id = v.id) FROM vocabularies v;

CREATE TRIGGER vocab_progress_new AFTER INSERT ON vocabularies BEGIN
    INSERT INTO vocab_progress(vocab_id) VALUES (NEW.id);
END;
CREATE TRIGGER doc_tokens_progress_add AFTER INSERT ON doc_tokens BEGIN
    UPDATE vocab_progress SET docs = docs + 1, tokens = tokens + NEW.n_tokens WHERE vocab_id = NEW.vocab_id;
END;
-- kiln deletes no tokens; should anything do so, the cursors step back and
-- the piece counts are recounted on next use
CREATE TRIGGER doc_tokens_progress_del AFTER DELETE ON doc_tokens BEGIN
    UPDATE vocab_progress SET docs = docs - 1, tokens = tokens - OLD.n_tokens, counted = 0,
        tokenized_through = min(tokenized_through, OLD.doc_id - 1),
        linked_through = min(linked_through, OLD.doc_id - 1)
    WHERE vocab_id = OLD.vocab_id;
END;
