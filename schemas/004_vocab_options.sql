-- 004_vocab_options.sql: how a vocabulary tokenizes beyond its casing
-- (issue #20: Korean, Japanese and other scripts).
-- strip_accents: transformers' BertTokenizer option of that name. NULL
-- follows the casing (accents stripped when uncased: transformers' None,
-- every vocabulary before this migration); 0 lowercases (if uncased)
-- without stripping; 1 strips even when cased.
ALTER TABLE vocabularies ADD COLUMN strip_accents INTEGER CHECK (strip_accents IN (0, 1));
-- words: what a word is for whole-word and n-gram masking (the word-start
-- bits of doc_tokens). 'bert': BERT's basic tokens (each CJK ideograph a
-- word, a run of kana or Hangul one word); 'icu': runs of whole words of
-- ICU's word break iterator (dictionary words for Japanese and Chinese).
ALTER TABLE vocabularies ADD COLUMN words TEXT NOT NULL DEFAULT 'bert' CHECK (words IN ('bert', 'icu'));
