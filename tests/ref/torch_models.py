"""tests/ref/torch_models.py: Hugging Face's AlbertForPreTraining,
BertForPreTraining, AlbertForSequenceClassification,
BertForSequenceClassification, ElectraForPreTraining, ElectraForMaskedLM and
ElectraForSequenceClassification rebuilt from torch.nn modules (transformers
is not installed here), with the same parameter names, for the trainer's
parity test (torch_parity.py) and speed comparison (torch_bench.py,
bench/electra).

Faithful to transformers 4.x: post-LayerNorm blocks, attention mask added as
(1 - mask) * finfo.min, GELU "gelu" = erf form, "gelu_new" = tanh form,
ALBERT layer i uses group int(i / (layers / groups)), ALBERT has no dropout
after its FFN (its AlbertLayer.dropout is unused), the MLM decoder is tied to
the word embeddings, nn.Embedding(padding_idx=pad) for the words. The heads
are evaluated at the masked positions only (gathered rows), which gives the
same logits as running them on every position. The classifiers are HF's
*ForSequenceClassification: tanh pooler on [CLS] (bert.pooler.dense /
albert.pooler), nn.Dropout(classifier_dropout) on the pooled output, then
nn.Linear `classifier` (num_labels outputs; 1 = regression).

kiln's model options, beyond Hugging Face's BERT (flags of BertModel):
  pre_ln  GPT-2's block: x = x + attn(LN1(x)); x = x + ffn(LN2(x)), with LN1 =
          attention.output.LayerNorm and LN2 = output.LayerNorm of each layer,
          and a final LayerNorm bert.encoder.final_layer_norm after the last
          layer, before the pooler and the heads.
  causal  query t attends to keys <= t: the future is masked with finfo.min
          like padding (one mask, so no -inf from adding two minima).

ELECTRA (transformers' modeling_electra): ElectraModel = ElectraEmbeddings
(word / position / type of width E = embedding_size, LayerNorm, dropout),
`embeddings_project` (nn.Linear E -> H) only when E != H, then BERT's post-LN
layers under electra.encoder.layer.N. ElectraForPreTraining adds
ElectraDiscriminatorPredictions (dense H -> H, hidden_act, dense_prediction
H -> 1: one logit per token); ElectraForMaskedLM adds
ElectraGeneratorPredictions (dense H -> E, GELU fixed to the erf form
whatever hidden_act, LayerNorm E) and generator_lm_head (nn.Linear E -> V)
whose weight is tied to the word embeddings, its bias its own;
ElectraForSequenceClassification adds ElectraClassificationHead on [CLS]
(dropout, dense H -> H, erf GELU, dropout, out_proj H -> num_labels).
ElectraPair is the pretraining pair as kiln registers it: the discriminator
(ElectraForPreTraining's names) plus `generator` (ElectraForMaskedLM of the
generator's config: hidden_size G, its own layers) whose embeddings module IS
the discriminator's (one set of Parameters: word, position and token type
embeddings and the embedding LayerNorm), so named_parameters lists them once,
under electra.embeddings, and the tied decoder is the same word embeddings.
The pair does not sample: its discriminator reads the corrupted ids it is
given (kiln's draws), and the replaced-token loss is
BCE-with-logits averaged over the real tokens, weighted by disc_weight.

Losses (kiln's definitions): MLM = sum(w * CE) / sum(w) over the masked slots
(w = masked_weights), sentence = mean CE over rows with label >= 0,
classification = F.cross_entropy(ignore_index=-1) (mean over labelled rows),
regression = F.mse_loss over the rows whose target is not NaN.

GPT-2 (transformers' modeling_gpt2): GPT2LMHeadModel = transformer.wte +
transformer.wpe (learned positions, no token types, no embedding LayerNorm,
no padding row), blocks transformer.h.N (x = x + attn.c_proj(attention(
attn.c_attn(ln_1(x)))); x = x + mlp.c_proj(act(mlp.c_fc(ln_2(x))))), the
final transformer.ln_f, and lm_head tied to wte (no bias). Conv1D is
transformers.pytorch_utils.Conv1D: y = x W + b with W [in, out]; c_attn's
output splits into query, key and value (in that order) of width H each. The
attention mask is causal plus the key padding mask (finfo.min, as mask_add).
lm_loss = mean CE of the next token over the real positions t whose t + 1 is
real (kiln's KHEAD_LM; Hugging Face's shift of labels, padding ignored).

DistilBERT (transformers' modeling_distilbert): DistilBertForMaskedLM =
distilbert.embeddings (word_embeddings with padding_idx, learned
position_embeddings, no token types, LayerNorm eps 1e-12, dropout),
distilbert.transformer.layer.N (MultiHeadSelfAttention q_lin, k_lin, v_lin,
out_lin with no dropout after out_lin; sa_layer_norm(sa + x); FFN lin1,
activation, lin2, dropout; output_layer_norm(ffn + sa)), then
vocab_transform (dim -> dim), the activation, vocab_layer_norm and
vocab_projector (dim -> V) whose weight is tied to the word embeddings, its
bias its own. The attention mask is the key padding mask (finfo.min).
DistilBertForSequenceClassification = the same distilbert.*, then on the
[CLS] row (no tanh pooler) pre_classifier (dim -> dim), ReLU, dropout
(seq_classif_dropout) and classifier (dim -> num_labels); its loss is the
classifiers' (class_loss).

build_encoder(c) is not a Hugging Face model but torch_bench.py's
--variant encoder: the strongest plain PyTorch fp32 model of the same
pretraining shape, built on torch.nn.TransformerEncoderLayer (batch_first,
dropout 0, post-LN, eps = layer_norm_eps for both norms) so PyTorch's own
attention and fused kernels run. `embeddings` (word with padding_idx, position,
type, LayerNorm, width E), `project` (E -> H) only when E != H, then the
layers with NO attention mask (every row is full length): ALBERT (model_type
albert) applies ONE layer module num_hidden_layers times (one weight set),
anything else has num_hidden_layers separate layers. GELU is the erf form
(activation="gelu", PyTorch's fused one) whatever hidden_act says: ALBERT's
gelu_new (tanh form) would need a Python callable, which turns off the
layer's fast path. MLM head at the gathered masked positions: dense H -> E,
erf GELU, LayerNorm, decoder tied to the word embeddings plus its own bias;
SOP: pooler (dense H -> H, tanh) on [CLS], classifier H -> 2. The parameter
count equals AlbertForPreTraining's (BertForPreTraining's for bert, whose
transform is the H -> E = H dense) since the layer holds the same tensors
(in_proj = query, key, value stacked). The MLM head's names differ from Hugging
Face's (mlm_dense, mlm_LayerNorm, mlm_bias): this model is for timing, not
parity. nn.TransformerEncoderLayer names its norms norm1,
norm2: no_decay() counts them as LayerNorm weights.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# the tied MLM decoder weight of each model type -> the tensor it shares
TIED_DECODER = {"albert": ("predictions.decoder.weight", "albert.embeddings.word_embeddings.weight"),
                "bert": ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
                "electra": ("generator_lm_head.weight", "electra.embeddings.word_embeddings.weight"),
                "electra_pair": ("generator.generator_lm_head.weight", "electra.embeddings.word_embeddings.weight"),
                "gpt2": ("lm_head.weight", "transformer.wte.weight"),
                "distilbert": ("vocab_projector.weight", "distilbert.embeddings.word_embeddings.weight")}


def gelu(kind):
    if kind == "gelu":
        return lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def mask_add(attn_mask, causal=False):
    """The additive attention mask: (B, 1, 1, L), or (B, 1, L, L) when causal;
    finfo.min where the key is padding (or, causal, after the query)."""
    keep = attn_mask[:, None, None, :].bool()
    if causal:
        L = attn_mask.shape[1]
        keep = keep & torch.tril(torch.ones(L, L, dtype=torch.bool))
    return (~keep).float() * torch.finfo(torch.float32).min


def attention(q, k, v, mask_add, nh):
    B, L, H = q.shape
    d = H // nh
    q = q.view(B, L, nh, d).transpose(1, 2)
    k = k.view(B, L, nh, d).transpose(1, 2)
    v = v.view(B, L, nh, d).transpose(1, 2)
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + mask_add
    p = torch.softmax(s, dim=-1)
    return torch.matmul(p, v).transpose(1, 2).reshape(B, L, H)


class Embeddings(nn.Module):
    def __init__(self, c, width):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], width, padding_idx=c["pad_token_id"])
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], width)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], width)
        self.LayerNorm = nn.LayerNorm(width, eps=c["layer_norm_eps"])

    def forward(self, ids, types):
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(pos) +
                              self.token_type_embeddings(types))


# ---- ALBERT ---------------------------------------------------------------------

class AlbertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)
        self.dense = nn.Linear(H, H)
        self.LayerNorm = nn.LayerNorm(H, eps=c["layer_norm_eps"])

    def forward(self, x, mask_add):
        ctx = attention(self.query(x), self.key(x), self.value(x), mask_add, self.nh)
        return self.LayerNorm(x + self.dense(ctx))


class AlbertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, I = c["hidden_size"], c["intermediate_size"]
        self.full_layer_layer_norm = nn.LayerNorm(H, eps=c["layer_norm_eps"])
        self.attention = AlbertAttention(c)
        self.ffn = nn.Linear(H, I)
        self.ffn_output = nn.Linear(I, H)
        self.act = gelu(c["hidden_act"])

    def forward(self, x, mask_add):
        a = self.attention(x, mask_add)
        return self.full_layer_layer_norm(self.ffn_output(self.act(self.ffn(a))) + a)


class AlbertGroup(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.albert_layers = nn.ModuleList([AlbertLayer(c)])


class AlbertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embedding_hidden_mapping_in = nn.Linear(c["embedding_size"], c["hidden_size"])
        self.albert_layer_groups = nn.ModuleList([AlbertGroup(c) for _ in range(c["num_hidden_groups"])])

    def forward(self, x, mask_add):
        h = self.embedding_hidden_mapping_in(x)
        n, g = self.c["num_hidden_layers"], self.c["num_hidden_groups"]
        for i in range(n):
            h = self.albert_layer_groups[int(i / (n / g))].albert_layers[0](h, mask_add)
        return h


class AlbertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c, c["embedding_size"])
        self.encoder = AlbertEncoder(c)
        self.pooler = nn.Linear(c["hidden_size"], c["hidden_size"])

    def forward(self, ids, types, mask_add):
        """the last hidden state (B, L, H)"""
        return self.encoder(self.embeddings(ids, types), mask_add)

    def pool(self, h):
        return torch.tanh(self.pooler(h[:, 0]))


class AlbertMLMHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        E = c["embedding_size"]
        self.bias = nn.Parameter(torch.zeros(c["vocab_size"]))
        self.LayerNorm = nn.LayerNorm(E, eps=c["layer_norm_eps"])
        self.dense = nn.Linear(c["hidden_size"], E)
        self.act = gelu(c["hidden_act"])

    def forward(self, h, emb):
        return torch.matmul(self.LayerNorm(self.act(self.dense(h))), emb.t()) + self.bias


class SOPHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.classifier = nn.Linear(c["hidden_size"], 2)


class AlbertForPreTraining(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.albert = AlbertModel(c)
        self.predictions = AlbertMLMHead(c)
        self.sop_classifier = SOPHead(c)

    def forward(self, ids, types, attn_mask, mrow, mpos):
        h = self.albert(ids, types, mask_add(attn_mask))
        logits = self.predictions(h[mrow, mpos], self.albert.embeddings.word_embeddings.weight)
        return logits, self.sop_classifier.classifier(self.albert.pool(h))


class AlbertForSequenceClassification(nn.Module):
    def __init__(self, c, num_labels, dropout=0.0):
        super().__init__()
        self.albert = AlbertModel(c)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c["hidden_size"], num_labels)

    def forward(self, ids, types, attn_mask, mrow=None, mpos=None):
        """logits (B, num_labels); mrow, mpos unused (the pretraining models' signature)"""
        h = self.albert(ids, types, mask_add(attn_mask))
        return self.classifier(self.dropout(self.albert.pool(h)))


# ---- BERT -----------------------------------------------------------------------

class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)


class DenseLN(nn.Module):
    def __init__(self, c, n_in):
        super().__init__()
        H = c["hidden_size"]
        self.dense = nn.Linear(n_in, H)
        self.LayerNorm = nn.LayerNorm(H, eps=c["layer_norm_eps"])


class BertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = DenseLN(c, c["hidden_size"])


class Intermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])


class BertLayer(nn.Module):
    def __init__(self, c, pre_ln=False):
        super().__init__()
        self.pre_ln = pre_ln
        self.nh = c["num_attention_heads"]
        self.attention = BertAttention(c)
        self.intermediate = Intermediate(c)
        self.output = DenseLN(c, c["intermediate_size"])
        self.act = gelu(c["hidden_act"])

    def forward(self, x, mask_add):
        s, o, f = self.attention.self, self.attention.output, self.output
        if self.pre_ln:
            h1 = o.LayerNorm(x)
            a = x + o.dense(attention(s.query(h1), s.key(h1), s.value(h1), mask_add, self.nh))
            return a + f.dense(self.act(self.intermediate.dense(f.LayerNorm(a))))
        ctx = attention(s.query(x), s.key(x), s.value(x), mask_add, self.nh)
        a = o.LayerNorm(o.dense(ctx) + x)
        return f.LayerNorm(f.dense(self.act(self.intermediate.dense(a))) + a)


class BertEncoder(nn.Module):
    def __init__(self, c, pre_ln=False):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c, pre_ln) for _ in range(c["num_hidden_layers"])])
        if pre_ln:
            self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, h, mask_add):
        for layer in self.layer:
            h = layer(h, mask_add)
        return self.final_layer_norm(h) if hasattr(self, "final_layer_norm") else h


class Pooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])


class BertModel(nn.Module):
    def __init__(self, c, pre_ln=False, causal=False):
        super().__init__()
        self.causal = causal
        self.embeddings = Embeddings(c, c["hidden_size"])
        self.encoder = BertEncoder(c, pre_ln)
        self.pooler = Pooler(c)

    def forward(self, ids, types, attn_mask):
        """the last hidden state (B, L, H), after the final LayerNorm of a pre-LN model"""
        return self.encoder(self.embeddings(ids, types), mask_add(attn_mask, self.causal))

    def pool(self, h):
        return torch.tanh(self.pooler.dense(h[:, 0]))


class Transform(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.dense = nn.Linear(H, H)
        self.LayerNorm = nn.LayerNorm(H, eps=c["layer_norm_eps"])


class LMPrediction(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(c["vocab_size"]))
        self.transform = Transform(c)


class BertHeads(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = LMPrediction(c)
        self.seq_relationship = nn.Linear(c["hidden_size"], 2)


class BertForPreTraining(nn.Module):
    def __init__(self, c, pre_ln=False, causal=False):
        super().__init__()
        self.bert = BertModel(c, pre_ln, causal)
        self.cls = BertHeads(c)
        self.act = gelu(c["hidden_act"])

    def forward(self, ids, types, attn_mask, mrow, mpos):
        h = self.bert(ids, types, attn_mask)
        p = self.cls.predictions
        t = p.transform.LayerNorm(self.act(p.transform.dense(h[mrow, mpos])))
        logits = torch.matmul(t, self.bert.embeddings.word_embeddings.weight.t()) + p.bias
        return logits, self.cls.seq_relationship(self.bert.pool(h))


class BertForSequenceClassification(nn.Module):
    def __init__(self, c, num_labels, dropout=0.0, pre_ln=False, causal=False):
        super().__init__()
        self.bert = BertModel(c, pre_ln, causal)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c["hidden_size"], num_labels)

    def forward(self, ids, types, attn_mask, mrow=None, mpos=None):
        """logits (B, num_labels); mrow, mpos unused (the pretraining models' signature)"""
        h = self.bert(ids, types, attn_mask)
        return self.classifier(self.dropout(self.bert.pool(h)))


# ---- ELECTRA ----------------------------------------------------------------------

class ElectraEmbeddings(Embeddings):
    """word + position + token type (width E), LayerNorm, dropout"""

    def __init__(self, c, dropout=0.0):
        super().__init__(c, c["embedding_size"])
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids, types):
        return self.dropout(super().forward(ids, types))


class ElectraModel(nn.Module):
    def __init__(self, c, embeddings=None):
        """embeddings: an ElectraEmbeddings module to share (the generator's
        are the discriminator's), or None for its own"""
        super().__init__()
        self.embeddings = embeddings if embeddings is not None else ElectraEmbeddings(c)
        if c["embedding_size"] != c["hidden_size"]:
            self.embeddings_project = nn.Linear(c["embedding_size"], c["hidden_size"])
        self.encoder = BertEncoder(c)

    def forward(self, ids, types, attn_mask):
        """the last hidden state (B, L, H)"""
        h = self.embeddings(ids, types)
        if hasattr(self, "embeddings_project"):
            h = self.embeddings_project(h)
        return self.encoder(h, mask_add(attn_mask))


class ElectraDiscriminatorPredictions(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.dense = nn.Linear(H, H)
        self.dense_prediction = nn.Linear(H, 1)
        self.act = gelu(c["hidden_act"])

    def forward(self, h):
        """one logit per position (B, L)"""
        return self.dense_prediction(self.act(self.dense(h))).squeeze(-1)


class ElectraGeneratorPredictions(nn.Module):
    def __init__(self, c):
        super().__init__()
        E = c["embedding_size"]
        self.LayerNorm = nn.LayerNorm(E, eps=c["layer_norm_eps"])
        self.dense = nn.Linear(c["hidden_size"], E)
        self.act = gelu("gelu")  # transformers: get_activation("gelu"), whatever hidden_act

    def forward(self, h):
        return self.LayerNorm(self.act(self.dense(h)))


class ElectraForPreTraining(nn.Module):
    """the discriminator: token logits (B, L)"""

    def __init__(self, c):
        super().__init__()
        self.electra = ElectraModel(c)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(c)

    def forward(self, ids, types, attn_mask):
        return self.discriminator_predictions(self.electra(ids, types, attn_mask))


class ElectraForMaskedLM(nn.Module):
    """the generator: logits at the masked positions (rows mrow, positions mpos)"""

    def __init__(self, c, embeddings=None):
        super().__init__()
        self.electra = ElectraModel(c, embeddings)
        self.generator_predictions = ElectraGeneratorPredictions(c)
        self.generator_lm_head = nn.Linear(c["embedding_size"], c["vocab_size"])
        self.generator_lm_head.weight = self.electra.embeddings.word_embeddings.weight  # tied

    def forward(self, ids, types, attn_mask, mrow, mpos):
        h = self.electra(ids, types, attn_mask)
        return self.generator_lm_head(self.generator_predictions(h[mrow, mpos]))


def generator_config(c):
    """the generator's config from the pair's: hidden_size G and its layers,
    heads and FFN width (generator_* keys); the rest (E, V, positions, act) shared"""
    g = dict(c)
    g["hidden_size"] = c["generator_hidden_size"]
    g["num_hidden_layers"] = g["num_hidden_groups"] = c["generator_num_hidden_layers"]
    g["num_attention_heads"] = c["generator_num_attention_heads"]
    g["intermediate_size"] = c["generator_intermediate_size"]
    return g


class ElectraPair(ElectraForPreTraining):
    """ELECTRA's pretraining pair: the discriminator's parameters under its
    Hugging Face names, the generator's under "generator.", embeddings shared"""

    def __init__(self, c):
        super().__init__(c)
        self.generator = ElectraForMaskedLM(generator_config(c), self.electra.embeddings)

    def forward(self, ids, types, attn_mask, mrow, mpos, disc_ids):
        """(generator logits (M, V) at the masked slots of `ids`, discriminator
        logits (B, L) on `disc_ids`, the corrupted input)"""
        glog = self.generator(ids, types, attn_mask, mrow, mpos)
        return glog, super().forward(disc_ids, types, attn_mask)


class ElectraClassificationHead(nn.Module):
    def __init__(self, c, num_labels, dropout=0.0):
        super().__init__()
        H = c["hidden_size"]
        self.dense = nn.Linear(H, H)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(H, num_labels)
        self.act = gelu("gelu")  # transformers: get_activation("gelu")

    def forward(self, h):
        x = self.dropout(h[:, 0, :])
        x = self.dropout(self.act(self.dense(x)))
        return self.out_proj(x)


class ElectraForSequenceClassification(nn.Module):
    def __init__(self, c, num_labels, dropout=0.0):
        super().__init__()
        self.electra = ElectraModel(c)
        self.classifier = ElectraClassificationHead(c, num_labels, dropout)

    def forward(self, ids, types, attn_mask, mrow=None, mpos=None):
        """logits (B, num_labels); mrow, mpos unused (the pretraining models' signature)"""
        return self.classifier(self.electra(ids, types, attn_mask))


def disc_loss(token_logits, token_labels):
    """ELECTRA's replaced-token loss as kiln (and Hugging Face's
    ElectraForPreTraining) define it: BCE with logits averaged over the real
    tokens (label >= 0; -1 marks padding)."""
    keep = token_labels >= 0
    return F.binary_cross_entropy_with_logits(token_logits[keep], token_labels[keep].float())


# ---- GPT-2 ----------------------------------------------------------------------

class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D: a linear layer with weight [in, out]"""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        out = torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight)
        return out.view(x.size()[:-1] + (self.nf,))


class GPT2Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.c_attn = Conv1D(3 * H, H)
        self.c_proj = Conv1D(H, H)

    def forward(self, x, mask_add):
        q, k, v = self.c_attn(x).split(x.shape[-1], dim=2)
        return self.c_proj(attention(q, k, v, mask_add, self.nh))


class GPT2MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, I = c["hidden_size"], c["intermediate_size"]
        self.c_fc = Conv1D(I, H)
        self.c_proj = Conv1D(H, I)
        self.act = gelu(c["hidden_act"])

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, eps = c["hidden_size"], c["layer_norm_eps"]
        self.ln_1 = nn.LayerNorm(H, eps=eps)
        self.attn = GPT2Attention(c)
        self.ln_2 = nn.LayerNorm(H, eps=eps)
        self.mlp = GPT2MLP(c)

    def forward(self, x, mask_add):
        x = x + self.attn(self.ln_1(x), mask_add)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.wte = nn.Embedding(c["vocab_size"], H)
        self.wpe = nn.Embedding(c["max_position_embeddings"], H)
        self.h = nn.ModuleList([GPT2Block(c) for _ in range(c["num_hidden_layers"])])
        self.ln_f = nn.LayerNorm(H, eps=c["layer_norm_eps"])

    def forward(self, ids, attn_mask):
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        x = self.wte(ids) + self.wpe(pos)
        m = mask_add(attn_mask, causal=True)
        for block in self.h:
            x = block(x, m)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = GPT2Model(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def forward(self, ids, attn_mask):
        """logits (B, L, V) at every position"""
        return self.lm_head(self.transformer(ids, attn_mask))


class DistilEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], H, padding_idx=c["pad_token_id"])
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], H)
        self.LayerNorm = nn.LayerNorm(H, eps=1e-12)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(pos))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.nh = c["num_attention_heads"]
        self.q_lin, self.k_lin, self.v_lin, self.out_lin = (nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H),
                                                            nn.Linear(H, H))

    def forward(self, x, mask_add):
        return self.out_lin(attention(self.q_lin(x), self.k_lin(x), self.v_lin(x), mask_add, self.nh))


class FFN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lin1 = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.lin2 = nn.Linear(c["intermediate_size"], c["hidden_size"])
        self.act = gelu(c["hidden_act"])

    def forward(self, x):
        return self.lin2(self.act(self.lin1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        H = c["hidden_size"]
        self.attention = MultiHeadSelfAttention(c)
        self.sa_layer_norm = nn.LayerNorm(H, eps=1e-12)
        self.ffn = FFN(c)
        self.output_layer_norm = nn.LayerNorm(H, eps=1e-12)

    def forward(self, x, mask_add):
        sa = self.sa_layer_norm(self.attention(x, mask_add) + x)
        return self.output_layer_norm(self.ffn(sa) + sa)


class DistilTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([TransformerBlock(c) for _ in range(c["num_hidden_layers"])])


class DistilBertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = DistilEmbeddings(c)
        self.transformer = DistilTransformer(c)

    def forward(self, ids, attn_mask):
        h, m = self.embeddings(ids), mask_add(attn_mask)
        for layer in self.transformer.layer:
            h = layer(h, m)
        return h


class DistilBertForMaskedLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, V = c["hidden_size"], c["vocab_size"]
        self.distilbert = DistilBertModel(c)
        self.vocab_transform = nn.Linear(H, H)
        self.vocab_layer_norm = nn.LayerNorm(H, eps=1e-12)
        self.vocab_projector = nn.Linear(H, V)
        self.vocab_projector.weight = self.distilbert.embeddings.word_embeddings.weight  # tied
        self.act = gelu(c["hidden_act"])

    def forward(self, ids, attn_mask, mrow, mpos):
        """MLM logits (M, V) at the masked slots (mrow, mpos)"""
        h = self.distilbert(ids, attn_mask)
        return self.vocab_projector(self.vocab_layer_norm(self.act(self.vocab_transform(h[mrow, mpos]))))


class DistilBertForSequenceClassification(nn.Module):
    """transformers' DistilBertForSequenceClassification: the [CLS] row of the
    last hidden state (no tanh pooler), pre_classifier (Linear dim -> dim),
    ReLU, dropout (seq_classif_dropout), classifier (Linear dim -> num_labels)"""
    def __init__(self, c, num_labels, dropout=0.0):
        super().__init__()
        H = c["hidden_size"]
        self.distilbert = DistilBertModel(c)
        self.pre_classifier = nn.Linear(H, H)
        self.classifier = nn.Linear(H, num_labels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids, attn_mask):
        """logits (B, num_labels)"""
        pooled = self.distilbert(ids, attn_mask)[:, 0]
        return self.classifier(self.dropout(F.relu(self.pre_classifier(pooled))))


# ---- nn.TransformerEncoderLayer baseline (torch_bench.py --variant encoder) ---------

class EncoderForPreTraining(nn.Module):
    """MLM + SOP pretraining model on torch.nn.TransformerEncoderLayer (see
    the top of this file, build_encoder)"""

    def __init__(self, c):
        super().__init__()
        E, H, eps = c["embedding_size"], c["hidden_size"], c["layer_norm_eps"]
        self.shared = c["model_type"] == "albert"
        self.n = c["num_hidden_layers"]
        self.embeddings = Embeddings(c, E)
        if E != H:
            self.project = nn.Linear(E, H)

        def layer():
            return nn.TransformerEncoderLayer(H, c["num_attention_heads"], c["intermediate_size"], dropout=0.0,
                                              activation="gelu", layer_norm_eps=eps, batch_first=True,
                                              norm_first=False)
        self.layers = nn.ModuleList([layer() for _ in range(1 if self.shared else self.n)])
        self.mlm_dense = nn.Linear(H, E)
        self.mlm_LayerNorm = nn.LayerNorm(E, eps=eps)
        self.mlm_bias = nn.Parameter(torch.zeros(c["vocab_size"]))
        self.pooler = nn.Linear(H, H)
        self.classifier = nn.Linear(H, 2)

    def forward(self, ids, types, attn_mask=None, mrow=None, mpos=None):
        """(MLM logits (M, V) at (mrow, mpos), SOP logits (B, 2)); attn_mask
        is ignored (full-length rows, no mask), kept for the signature"""
        h = self.embeddings(ids, types)
        if hasattr(self, "project"):
            h = self.project(h)
        for i in range(self.n):
            h = self.layers[0 if self.shared else i](h)
        t = self.mlm_LayerNorm(F.gelu(self.mlm_dense(h[mrow, mpos])))
        logits = F.linear(t, self.embeddings.word_embeddings.weight, self.mlm_bias)
        return logits, self.classifier(torch.tanh(self.pooler(h[:, 0])))


def build_encoder(c):
    """torch_bench.py's --variant encoder model for config c (albert or bert)"""
    return EncoderForPreTraining(c)


def lm_loss(logits, ids, lengths):
    """kiln's lm_loss: mean CE of token t + 1 at every real t with t + 1 real"""
    B, L, V = logits.shape
    keep = torch.tensor([[t + 1 < int(lengths[b]) for t in range(L - 1)] for b in range(B)])
    return F.cross_entropy(logits[:, :-1][keep], ids[:, 1:][keep])


def build(c, manifest=None):
    """The model of config c. Without a manifest: the pretraining model (MLM +
    sentence heads). With kiln's registry manifest (trainer/registry.h): the
    model its heads, num_labels, pre_ln and causal describe; the classifier's
    dropout is c.get("classifier_dropout", 0). ELECTRA: heads mlm + token is
    the pair (ElectraPair, c needs the generator_* keys), token alone the
    discriminator, mlm alone the generator, classify the sequence classifier.
    Raises ValueError for a combination not rebuilt here."""
    if c["model_type"] == "gpt2":
        if manifest is not None and (sorted(manifest["heads"]) != ["lm"] or not manifest["pre_ln"] or
                                     not manifest["causal"]):
            raise ValueError("GPT-2 is pre-LN and causal with the LM head only")
        return GPT2LMHeadModel(c)
    if c["model_type"] == "distilbert":
        heads = sorted(manifest["heads"]) if manifest is not None else ["mlm"]
        if heads not in (["mlm"], ["classify"]) or (manifest is not None and (manifest["pre_ln"] or
                                                                             manifest["causal"])):
            raise ValueError("DistilBERT is post-LN and bidirectional with the MLM or the classification head")
        if heads == ["classify"]:
            return DistilBertForSequenceClassification(c, int(manifest["num_labels"]),
                                                       float(c.get("classifier_dropout", 0.0)))
        return DistilBertForMaskedLM(c)
    if c["model_type"] == "electra":
        heads = sorted(manifest["heads"]) if manifest is not None else ["mlm", "token"]
        if manifest is not None and (manifest["pre_ln"] or manifest["causal"]):
            raise ValueError("ELECTRA's layers are post-LN and bidirectional")
        if heads == ["mlm", "token"]:
            return ElectraPair(c)
        if heads == ["token"]:
            return ElectraForPreTraining(c)
        if heads == ["mlm"]:
            return ElectraForMaskedLM(c)
        if heads == ["classify"]:
            return ElectraForSequenceClassification(c, int(manifest["num_labels"]),
                                                    float(c.get("classifier_dropout", 0.0)))
        raise ValueError(f"ELECTRA with heads {heads} is not rebuilt here")
    albert = c["model_type"] == "albert"
    if manifest is None:
        return AlbertForPreTraining(c) if albert else BertForPreTraining(c)
    heads, pre_ln, causal = sorted(manifest["heads"]), bool(manifest["pre_ln"]), bool(manifest["causal"])
    if albert and (pre_ln or causal):
        raise ValueError("pre_ln / causal ALBERT is not rebuilt here")
    if heads == ["mlm", "sentence"]:
        return AlbertForPreTraining(c) if albert else BertForPreTraining(c, pre_ln, causal)
    if heads == ["classify"]:
        n, p = int(manifest["num_labels"]), float(c.get("classifier_dropout", 0.0))
        return AlbertForSequenceClassification(c, n, p) if albert else \
            BertForSequenceClassification(c, n, p, pre_ln, causal)
    raise ValueError(f"heads {heads} are not rebuilt here")


def mlm_loss(logits, mlabels, mweights):
    """the masked-LM loss as kiln defines it: sum(w * CE) / sum(w) over the masked slots"""
    ce = torch.nn.functional.cross_entropy(logits, mlabels, reduction="none")
    w = mweights
    return (ce * w).sum() / w.sum() if float(w.sum()) > 0 else ce.sum() * 0


def losses(logits, sent_logits, mlabels, mweights, slabels):
    """(mlm_loss, sop_loss) as kiln defines them (see the top of this file)."""
    mlm = mlm_loss(logits, mlabels, mweights)
    keep = slabels >= 0
    sop = torch.nn.functional.cross_entropy(sent_logits[keep], slabels[keep]) if bool(keep.any()) else \
        sent_logits.sum() * 0
    return mlm, sop


def class_loss(logits, labels, targets):
    """The classifier's loss as kiln (and Hugging Face) define it: mean CE over
    rows with label >= 0, or for one output the MSE over rows with a target."""
    if logits.shape[1] > 1:
        return F.cross_entropy(logits, labels, ignore_index=-1)
    keep = ~torch.isnan(targets)
    return F.mse_loss(logits[keep, 0], targets[keep])


def no_decay(name):
    """Tensors without weight decay: biases and LayerNorm weights (GPT-2's ln_1, ln_2, ln_f;
    nn.TransformerEncoderLayer's norm1, norm2)."""
    return ("bias" in name or "LayerNorm" in name or "layer_norm" in name or ".ln_" in name or
            ".norm1." in name or ".norm2." in name)


def transposed(model_type, name):
    """Tensors kiln keeps as Linear's [out, in] and exports as [in, out]: GPT-2's Conv1D weights"""
    return model_type == "gpt2" and name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
