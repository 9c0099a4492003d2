#!/usr/bin/env python3
"""make_texts.py: writes texts.txt, the hand-made edge-case corpus of the
WordPiece parity test (tests/integration/test_wordpiece_parity.sh).

One test per line, UTF-8.  Invisible and control characters are written here
as escapes and land in the file as the real characters (the test feeds the
file as is); only '\\n' cannot appear inside a line.  Run:
    python3 tests/ref/make_texts.py [OUT]     (default: texts.txt beside it)
"""
import os
import sys

L = []


def add(*lines):
    L.extend(lines)


# --- English prose, the hand-checked examples
add("Hello, World!",
    "hello world",
    "unaffable",
    "UNwant\u00e9d,running",
    "naïve café",
    "don't",
    "I'm sure it's fine, we've said they're here and you'll see; won't you?",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "It was the best of times, it was the worst of times, it was the age of "
    "wisdom, it was the age of foolishness...",
    "Mr. O'Neill's dog-eared copy of \"Ulysses\" (1922) cost $3.50 -- a bargain!",
    "Internationalization, tokenization and antidisestablishmentarianism.",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "McDonald's iPhone eBay YouTube JavaScript macOS",
    "state-of-the-art co-operation re-enter e-mail",
    "rock 'n' roll, 'quoted', \"double\", `backtick`",
    "a", "A", "I", "x y z", "ab", "Ab", "AB")

# --- numbers
add("0 1 2 3 4 5 6 7 8 9 10 100 1000 10000 123456789012345678901234567890",
    "3.14159 -2.5e-10 +42 1,000,000 1.000.000,00 50% ½ ¾",
    "2024-01-15T13:45:30Z 12:30pm 07/04/1776",
    "+1 (555) 123-4567 #1 No.5 №7 x86_64 v2.0.1-rc1",
    "0x1F 0b1010 0o777 1e100 NaN inf -0",
    "١٢٣ ٤٥٦ ०१२३ ๑๒๓ 一二三 ①②③ ⅠⅡⅢ 𝟘𝟙𝟚")

# --- URLs, e-mails, paths
add("https://www.example.com/path/to/page?query=1&lang=en#section",
    "http://user:pass@host.example:8080/a_b-c.d~e/%20x",
    "ftp://ftp.example.org/pub/file.tar.gz",
    "www.example.co.uk/index.html",
    "mailto:john.doe+tag@example.com",
    "Contact: jane_doe@sub.example.org, bob@localhost",
    "/usr/local/bin/kiln --help; C:\\Windows\\System32\\cmd.exe",
    "https://ja.wikipedia.org/wiki/東京 https://ru.wikipedia.org/wiki/Москва")

# --- code
add("int main(int argc, char **argv) { return argv[0][0] == '\\0'; }",
    "for (i = 0; i < n; i++) x[i] += y[i] * 2;",
    "def f(x): return {k: v for k, v in x.items() if v is not None}",
    "SELECT * FROM users WHERE name LIKE '%smith%' AND age >= 18;",
    "<html><body class=\"x\">&amp; &lt;tag&gt; &#x41;</body></html>",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
    "a && b || !c; x |= y ^ ~z; p->q; a::b; @decorator; $var; #include <stdio.h>",
    "snake_case_name camelCaseName PascalCaseName SCREAMING_SNAKE kebab-case",
    "regex: ^[a-zA-Z0-9._%+-]+@[a-z]+\\.[a-z]{2,}$",
    "    indented with spaces",
    "\tindented with a tab",
    "x=1;y=2;z=x+y;print(z)")

# --- every ASCII punctuation character, alone, glued, and all together
ascii_punct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
add(ascii_punct, " ".join(ascii_punct))
for ch in ascii_punct:
    add("a" + ch + "b")
add("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    "?!?!?!?! ... ,,,, ;;;; :::: ---- ____ ==== ~~~~ //// \\\\\\\\",
    "." * 150,
    "-" * 300,
    ascii_punct * 10,
    "Wait... what?!?! (really) [sure] {ok} <fine>")

# --- Unicode punctuation (and non-punctuation symbols that look like it)
add("«Bonjour» „Guten Tag“ “Hello” ‘hi’ ‚low‘ ‹single›",
    "em—dash en–dash horizontal―bar hyphen‐minus figure‒dash minus−sign",
    "ellipsis… ¿Qué? ¡Hola! interrobang‽ ⸮reversed",
    "中黒・テスト。句点、読点「括弧」『二重』【隅付き】〈山〉《二重山》〜",
    "middle·dot bullet• dagger† double‡ section§ pilcrow¶ prime′ double″ ※ ⁂",
    "Arabic؟ comma، Devanagari danda। double॥ Georgian჻ Ethiopic፧",
    "fullwidth！＂＃＄％＆＇（）＊＋，－．／：；＜＝＞？＠［＼］＾＿｀｛｜｝～",
    "Greek question mark\u037e ano teleia\u0387 varia\u1fefx oxia\u1ffdx",
    "degree° copyright© registered® trademark™ plusminus± times× divide÷ not¬",
    "«»„“”—–…¿¡‽・。、「」",
    "„“”—–…" * 20)

# --- accents, precomposed and decomposed; normalization order
add("café cafe\u0301 CAFÉ CAFE\u0301",
    "résumé re\u0301sume\u0301 RÉSUMÉ",
    "naïve nai\u0308ve Noël Noe\u0308l",
    "Ångström A\u030angstro\u0308m \u212bngstr\u00f6m",
    "ñ n\u0303 Ñ N\u0303 español ESPAÑOL",
    "ệ e\u0302\u0323 e\u0323\u0302 Việt Nam tiếng Việt",
    "ǅ ǆ Ǆ ĳ Ĳ ŉ",
    "e\u0301\u0301\u0301 a\u0300\u0301\u0302\u0303\u0304\u0305",
    "\u0301 leading combining mark",
    "\u0301\u0302\u0303",
    "x \u0301 y",
    "Zalgo: Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319"
    "\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da\u0340\u0341l\u0300g\u0301o",
    "e\u200b\u0301 e\u00ad\u0301 e\ufeff\u0301",
    "\u0340\u0341\u0343\u0344 a\u0340 a\u0344",
    "\u00c5 \u212b A\u030a",
    "Kelvin \u212a 5\u212a k",
    "ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ ﬁnance ﬂuﬀy",
    "x² y³ z¹ H₂O CO₂ 10⁻⁶ ⁿ",
    "Ⅻ ⅻ Ⅰ Ⅱ Ⅲ Ⅳ Ⅿ ↀ",
    "½ ⅓ ¼ ⅞ ㎏ ㎞ ℃ ℉ ℓ № ℡ ™ ㈱",
    "ＡＢＣ１２３ ａｂｃ Ｈｅｌｌｏ，　Ｗｏｒｌｄ！",
    "ｶﾀｶﾅ ﾊﾝｶｸ ｰ ﾞ ﾟ",
    "𝐀𝐁𝐂 𝑎𝑏𝑐 𝔄𝔅 𝕏 𝟙𝟚𝟛")

# --- German, Turkish, Greek (final sigma), Cyrillic
add("Straße STRASSE straße Fußgängerübergänge ẞ",
    "Größe Äpfel Übermut Öl ÄÖÜ äöü",
    "İstanbul ISTANBUL istanbul İ ı I i",
    "DİYARBAKIR Işık ılık IŞIK iğne Ağaç",
    "i\u0307 I\u0307 İİİ",
    "ΟΔΟΣ οδός ΟΔΟΣ. ΟΔΟΣ,ΟΔΟΣ",
    "Σίσυφος ΣΊΣΥΦΟΣ σίσυφος",
    "Σ σ ς ΣΣ ΑΣ ΑΣ. Σ.",
    "ΑΘΗΝΑ Ἀθῆναι ᾅδης ᾼ ᾳ ΐ ΰ Ϊ́",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "Привет, мир! ЁЛКА ёжик Й й и\u0306",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Україна Ґ ґ Ї ї Є є Беларусь Ў ў Србија Ђ ђ Ћ ћ Џ",
    "ԱՅԲՈՒԲԵՆ Հայերեն ქართული ენა")

# --- right-to-left scripts
add("مرحبا بالعالم",
    "كِتَابٌ العَرَبِيَّةُ اللُّغَةُ",
    "النص العربي، مع علامات الترقيم؟ نعم!",
    "ﻻ ﷲ ﷺ ﭐ",
    "فارسی: سلام دنیا، گ چ پ ژ",
    "اردو: ہیلو دنیا ۔",
    "שלום עולם",
    "שָׁלוֹם עוֹלָם בְּרֵאשִׁית",
    "עִבְרִית: ״מרכאות״ ׳גרש׳ ־מקף",
    "mixed English עברית and العربية text",
    "\u200fRTL mark\u200e LTR mark \u202aembedding\u202c \u2066isolate\u2069")

# --- Indic, Southeast Asian
add("नमस्ते दुनिया",
    "हिन्दी संस्कृतम् क़िला ज़िन्दगी क्षत्रिय",
    "क\u093c ख\u093c \u0958 \u0959 \u095e",
    "कि की कु कू के कै को कौ कं कः कँ",
    "भारत। भारत॥",
    "বাংলা ভাষা য় \u09df \u09af\u09bc",
    "தமிழ் மொழி",
    "తెలుగు ಕನ್ನಡ മലയാളം ગુજરાતી ਪੰਜਾਬੀ ଓଡ଼ିଆ",
    "සිංහල",
    "สวัสดีครับ ภาษาไทยไม่มีช่องว่าง",
    "กรุงเทพมหานคร อมรรัตนโกสินทร์",
    "ភាសាខ្មែរ សួស្តី",
    "ພາສາລາວ",
    "မြန်မာဘာသာ",
    "བོད་སྐད་",
    "ᠮᠣᠩᠭᠣᠯ Mongolian\u180eseparator")

# --- Korean, Japanese, Chinese
add("안녕하세요 세계",
    "한국어 한글 조선말",
    "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165",
    "\u1112\u1161\u11ab \u1100\u116e\u11a8",
    "ᄀ ᅡ ᆨ ㄱ ㄴ ㄷ ㅏ ㅑ",
    "한" * 40,
    "한국어" * 12,
    "한국어" * 13,
    "こんにちは世界",
    "ひらがな カタカナ 漢字 ー〜",
    "東京タワーは東京都港区芝公園にある電波塔です。",
    "私はガラスを食べられます。それは私を傷つけません。",
    "ｶﾞｷﾞｸﾞ が ぎ か\u3099 き\u3099",
    "北京欢迎你",
    "中华人民共和国 中華民國 漢字 汉字 學習 学习",
    "我爱你，中国！你好吗？",
    "我的电话是123456，邮箱abc@qq.com。",
    "𠀀 𠀁 𪚥 𪜀 𫝀 𫠠 𬺰 𠮷野家",
    "\u3400\u4dbf \u4e00\u9fff \U0002a6df \U0002b81f \U0002ceaf",
    "\U00030000\U00030001 \U0002ceb0 \U0002ebe0 (Ext G, Ext F: not in the CJK ranges)",
    "\uf900\uf901 \ufa0e \ufa6d \U0002f800\U0002f801 \U0002fa1d",
    "⺀⺁ ⼀⼁ 〇 々 〆 ㈠ ㊀ 〡",
    "中a文b字c",
    "中\u0301 中\u0301文",
    "　全角空白　テスト　")

# --- emoji
add("😀",
    "I love it 😀😀😀!",
    "👨\u200d👩\u200d👧 family",
    "👨\u200d👩\u200d👧\u200d👦👩\u200d❤\ufe0f\u200d💋\u200d👨",
    "🇫🇷 🇯🇵 🇺🇸🇬🇧 🇩🇪",
    "👍 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿",
    "1\ufe0f\u20e3 2\ufe0f\u20e3 #\ufe0f\u20e3 *\ufe0f\u20e3 1\u20e3",
    "❤ ❤\ufe0f ❤\ufe0e ☺\ufe0f ☺",
    "🏳\ufe0f\u200d🌈 🏴\u200d☠\ufe0f",
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scotland",
    "🧑🏿\u200d💻 coding",
    "emoji😀glued😀to😀words",
    "©\ufe0f ®\ufe0f ™\ufe0f",
    "葛\U000e0100 葛\U000e0101 variation selectors supplement",
    "😀" * 99,
    "😀" * 100,
    "😀" * 101)

# --- invisible, space-like and control characters
add("zero\u200bwidth\u200bspace",
    "zero\u200cwidth\u200dnon-joiner/joiner",
    "soft\u00adhy\u00adphen",
    "word\u2060joiner",
    "BOM\ufeffin\ufeffthe\ufeffmiddle",
    "\ufeffleading BOM",
    "non\u00a0breaking\u00a0space",
    "ideographic\u3000space",
    "narrow\u202fnbsp thin\u2009space hair\u200aspace em\u2003space",
    "figure\u2007space punct\u2008space ogham\u1680space mmsp\u205fx",
    "line\u2028separator",
    "paragraph\u2029separator",
    "both\u2028\u2029here \u2028 \u2029",
    "tab\tseparated\tvalues\t",
    "\t\t\t",
    "vertical\x0btab form\x0cfeed",
    "file\x1csep group\x1dsep record\x1esep unit\x1fsep",
    "start\x01of\x02heading\x03",
    "delete\x7fchar",
    "next\x85line",
    "C1\x80\x9f controls",
    "bell\x07 backspace\x08 escape\x1b[0m",
    "null\x00byte",
    "\x00\x00\x00",
    "replacement\ufffdchar",
    "carriage\rreturn",
    "trailing carriage return\r",
    "\r",
    "private\ue000use\uf8ff chars \U000f0000\U0010fffd",
    "\ue000\ue001\ue002",
    "noncharacters \ufdd0\ufdef \ufffe\uffff \U0001fffe",
    "unassigned in Unicode 14: \u0378 \U0001f6dc \U00031350 \U0002ebf0",
    "interlinear\ufff9anchor\ufffaseparator\ufffbterminator",
    "bidi \u202e\u202d\u2067\u2068 override \u061c alm",
    "tags \U000e0001\U000e0041\U000e007f",
    "Mongolian\u180evowel separator",
    "hangul filler\u3164 \u115f\u1160 \uffa0",
    "braille blank\u2800here",
    "combining grapheme joiner a\u034fb",
    "",
    " ",
    "     ",
    "\u00a0\u00a0",
    "\u3000",
    "\u2028",
    " \t \u3000 \u2029 \u00a0 ")

# --- long words around max_input_chars_per_word (100; Google's 200)
for n in (99, 100, 101, 150, 199, 200, 201, 500):
    add("a" * n)
for n in (99, 100, 101, 200, 201):
    add("ab" * (n // 2) + "a" * (n % 2))
for n in (99, 100, 101, 150, 200, 201, 500):
    add("é" * n)
add("e\u0301" * 60,          # 120 code points in, 60 after NFC
    "e\u0301" + "a" * 99,    # 101 in, 100 after NFC
    "E\u0301" * 101,
    "İ" * 60,                # uncased: 120 before stripping, 60 after
    "ﬁ" * 101,
    "Ж" * 99, "Ж" * 100, "Ж" * 101, "Ж" * 201,
    "x" * 101 + " short " + "y" * 99,
    "word " * 60,
    "a" * 100 + "," + "b" * 100,
    "a" * 100 + "." + "b" * 101,
    "𐌀" * 101,
    "𝄞" * 100,
    "supercalifragilisticexpialidocious" * 3,
    "https://example.com/" + "a" * 120,
    "a_" * 60,
    "ab" * 250)

# --- special tokens in text
add("[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]",
    "[CLS] Hello [SEP] World [SEP]",
    "The [MASK] sat on the mat.",
    "hello[SEP]world",
    "[MASK][MASK][MASK]",
    "[[MASK]] [[CLS] [SEP]] [[[UNK]]]",
    "[mask] [Mask] [cls] [sep] [pad] [unk]",
    "[MASK [MASK MASK] [ MASK ] [MASK ]",
    "x[CLS]y [SEP]. ,[PAD], ([UNK])",
    "[CLS]Ünïcödé[SEP]ÀÉÎ[MASK]",
    "Σ[MASK]Σ ΣΣ[SEP]",
    "[MA\u200bSK] [CL\u00adS] [SEP\ufeff] [\x01PAD] [UNK\x7f]",
    "[ＭＡＳＫ] ［MASK］ [MASK]\u0301 \u0301[MASK]",
    "[MASK]\t[SEP]\u3000[CLS]\u2028[PAD]",
    "   [MASK]   ",
    "[UNK][UNK] unknown [UNK]")

# --- mathematical, currency, symbols, other scripts
add("∑ ∫ ∂ ∇ √ ∞ ≤ ≥ ≠ ≈ ∈ ∉ ⊂ ⊃ ∀ ∃ ∧ ∨ ¬ ⇒ ⇔",
    "∑_{i=1}^{n} x_i ≤ ∫₀^∞ f(x) dx",
    "E = mc² and a² + b² = c²",
    "€100 £50 ¥1000 ₹500 $20 ¢5 ₩1000 ₽ ₿ ₺ ₴ ₪",
    "100€ 50£ 3,50 € 1 000 ₽",
    "┌──┬──┐ │a │b │ └──┴──┘ ═ ║ ╔ ╗ ▀▄█▌▐░▒▓",
    "⠓⠑⠇⠇⠕ ⠺⠕⠗⠇⠙ braille",
    "𝄞 𝄢 𝅘𝅥𝅮 ♩ ♪ ♫ ♬ ♭ ♮ ♯",
    "\U0001d15e\U0001d15f \U0001d160 \U0001d16d\U0001d165 musical composition",
    "𐌀𐌁𐌂𐌃 Old Italic 𐌰𐌱𐌲 Gothic 𓀀𓀁 hieroglyphs 𒀀 cuneiform",
    "ᚠᚢᚦᚨᚱᚲ runes ᚛ᚁᚂᚃ᚜ ogham",
    "★☆✓✗✔✘ ☀☁☂ ♠♣♥♦ ⚠ ☢ ☣ ☯ ☮ ⌘ ⌥ ⏎",
    "←↑→↓↔↕ ⇐⇑⇒⇓ ➡ ⬅",
    "ⓐⓑⓒ Ⓐ ⑴⑵ ⒜ 🄰🄱",
    "ⅰⅱⅲ ꜱᴍᴀʟʟ ᴄᴀᴘꜱ ɪᴘᴀ: ʃ ʒ θ ð ŋ ɹ ə",
    "ꙮ ꚙ Ꙛ Ꚙ",
    "ᏣᎳᎩ Cherokee ᐃᓄᒃᑎᑐᑦ Inuktitut ߒߞߏ N'Ko",
    "ⴰⵣⴰⵡⴰⵖ Tifinagh ሰላም Amharic",
    "Ǳ ǲ ǳ ꝺ Ꝺ ᵹ",
    "Ꭰ ꭰ ᲀ ẞ ß ſ ﬅ",
    "ℌ ℑ ℜ ℨ ℭ ℊ ℎ ℏ ℓ ℘ ℵ",
    "₀₁₂₃₄₅₆₇₈₉ ⁰¹²³⁴⁵⁶⁷⁸⁹")

# --- mixed, realistic
add("Le cœur a ses raisons que la raison ne connaît point.",
    "Ça va? Oui, ça va très bien, merci!",
    "¿Dónde está la biblioteca? ¡Aquí!",
    "Über die Brücke geht's zum Café in der Straße.",
    "Tôi có thể ăn thủy tinh mà không hại gì.",
    "Jeg kan spise glas, det gør ikke ondt på mig. Øl Å æ",
    "Mogę jeść szkło i mi nie szkodzi. Łódź Źdźbło",
    "Můžu jíst sklo, neublíží mi. Příliš žluťoučký kůň",
    "Meg tudom enni az üveget, nem lesz tőle bajom. Ő ű",
    "Pot să mănânc sticlă și ea nu mă rănește. Ș ș Ţ ţ",
    "Saya boleh makan kaca dan ia tidak mencederakan saya.",
    "Ég get etið gler án þess að meiða mig. Þ ð",
    "Mi povas manĝi vitron, ĝi ne damaĝas min. ĉ ĝ ĥ ĵ ŝ ŭ",
    "Kan ek glas eet, maar dit doen my nie skade nie.",
    "Eu posso comer vidro, não me faz mal. ação São Paulo",
    "Я могу есть стекло, оно мне не вредит.",
    "მინას ვჭამ და არა მტკივა.",
    "Կրնամ ապակի ուտել և ինծի անհանգիստ չըներ։",
    "I can eat glass: 私はガラスを食べられます / 我能吞下玻璃而不伤身体 / 나는 유리를 먹을 수 있어요",
    "Price: €1.234,56 (incl. 19% VAT) — see https://shop.example/p?id=42 😀",
    "He said: «It's 5 o'clock»… and left—quickly!",
    "C'est l'été; l'hôtel d'Orsay n'ouvre qu'à 9h.",
    "won't can't shouldn't y'all ma'am o'clock",
    "tl;dr: LGTM +1 👍",
    "@user #hashtag $TICKER %complete ^caret &amp *star",
    "path/to/file.txt:42:7: error: expected ';'",
    "“Smart quotes” and ‘single’ vs \"dumb\" and 'plain'",
    "a.b.c d,e,f g;h;i j:k:l m!n?o",
    "...leading and trailing...",
    " leading space",
    "trailing space ",
    "  multiple   internal    spaces  ")

# --- lowercasing corner cases (str.lower is per character here)
add("ǅungla ǈudevit ǋ",
    "ΣΑΣ ΣΑΣ. ΌΣΟΣ ΣΟΦΟΣ",
    "ὈΔΥΣΣΕΎΣ",
    "ᾈ ᾘ ᾨ ᾼ ῌ ῼ",
    "ﬃ FFI ᾀ",
    "Ω \u2126 ω K \u212a k Å \u212b å",
    "ϴ θ ϑ ϒ ϓ ϔ",
    "Ⓐ ⓐ 🅐",
    "𐐀𐐁 𐐨𐐩 Deseret",
    "𞤀𞤁 𞤢𞤣 Adlam",
    "Ꞵ ꞵ Ꟶ ꟶ")

# --- hand-made oddities around splitting
add("a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u-v-w-x-y-z",
    "end.", ".start", "(parenthesized)", "[bracketed]", "{braced}",
    "'single' \"double\"",
    "a'b a’b a‘b a`b a´b",
    "1.2.3.4 192.168.0.1 ::1 fe80::1%eth0",
    "C++ C# F# .NET Node.js",
    "U.S.A. e.g. i.e. etc. vs.",
    "😀,😀.😀!",
    "中,文.字!",
    "한국어,한국어.",
    "ΟΔΟΣ,ΟΔΟΣ.",
    "a\u0301,b\u0301.",
    "##hash ## ###triple #hashtag",
    "##ing ##s un##aff##able")

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "texts.txt")
    for i, s in enumerate(L):
        assert "\n" not in s, (i, s)
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in s), (i, s)
    with open(out, "wb") as f:
        f.write("".join(s + "\n" for s in L).encode("utf-8"))
    print(f"{out}: {len(L)} lines", file=sys.stderr)
