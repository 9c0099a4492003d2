-- 006_bpe.sql: byte-level BPE vocabularies (GPT-2's tokenizer, issue #14).
-- kind: 'wordpiece' (every vocabulary before this migration: pieces is a
-- vocab.txt) or 'bpe' (pieces is a vocab.json, token -> id, tokens in
-- GPT-2's byte-level alphabet, and merges its merges.txt). A BPE vocabulary
-- has no casing, accents or word rule of its own: cased = 1,
-- strip_accents NULL, words 'bert' (word starts are its pre-tokens).
ALTER TABLE vocabularies ADD COLUMN kind TEXT NOT NULL DEFAULT 'wordpiece' CHECK (kind IN ('wordpiece', 'bpe'));
-- merges.txt: "#version: 0.2", then one "A B" a line in rank order; NULL for WordPiece
ALTER TABLE vocabularies ADD COLUMN merges TEXT CHECK ((kind = 'bpe') = (merges IS NOT NULL));
