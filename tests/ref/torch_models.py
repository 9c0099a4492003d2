"""tests/ref/torch_models.py: Hugging Face's AlbertForPreTraining and
BertForPreTraining rebuilt from torch.nn modules (transformers is not
installed here), with the same parameter names, for the trainer's parity test
(torch_parity.py) and speed comparison (torch_bench.py).

Faithful to transformers 4.x: post-LayerNorm blocks, attention mask added as
(1 - mask) * finfo.min, GELU "gelu" = erf form, "gelu_new" = tanh form,
ALBERT layer i uses group int(i / (layers / groups)), ALBERT has no dropout
after its FFN (its AlbertLayer.dropout is unused), the MLM decoder is tied to
the word embeddings, nn.Embedding(padding_idx=pad) for the words. The heads
are evaluated at the masked positions only (gathered rows), which gives the
same logits as running them on every position.

Losses (kiln's definitions): MLM = sum(w * CE) / sum(w) over the masked slots
(w = masked_weights), sentence = mean CE over rows with label >= 0.
"""
import math

import torch
import torch.nn as nn


def gelu(kind):
    if kind == "gelu":
        return lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


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
        mask_add = (1.0 - attn_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        h = self.albert.encoder(self.albert.embeddings(ids, types), mask_add)
        logits = self.predictions(h[mrow, mpos], self.albert.embeddings.word_embeddings.weight)
        pooled = torch.tanh(self.albert.pooler(h[:, 0]))
        return logits, self.sop_classifier.classifier(pooled)


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
    def __init__(self, c):
        super().__init__()
        self.nh = c["num_attention_heads"]
        self.attention = BertAttention(c)
        self.intermediate = Intermediate(c)
        self.output = DenseLN(c, c["intermediate_size"])
        self.act = gelu(c["hidden_act"])

    def forward(self, x, mask_add):
        s = self.attention.self
        ctx = attention(s.query(x), s.key(x), s.value(x), mask_add, self.nh)
        o = self.attention.output
        a = o.LayerNorm(o.dense(ctx) + x)
        f = self.output
        return f.LayerNorm(f.dense(self.act(self.intermediate.dense(a))) + a)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c["num_hidden_layers"])])


class Pooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])


class BertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c, c["hidden_size"])
        self.encoder = BertEncoder(c)
        self.pooler = Pooler(c)


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
    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c)
        self.cls = BertHeads(c)
        self.act = gelu(c["hidden_act"])

    def forward(self, ids, types, attn_mask, mrow, mpos):
        mask_add = (1.0 - attn_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        h = self.bert.embeddings(ids, types)
        for layer in self.bert.encoder.layer:
            h = layer(h, mask_add)
        p = self.cls.predictions
        t = p.transform.LayerNorm(self.act(p.transform.dense(h[mrow, mpos])))
        logits = torch.matmul(t, self.bert.embeddings.word_embeddings.weight.t()) + p.bias
        pooled = torch.tanh(self.bert.pooler.dense(h[:, 0]))
        return logits, self.cls.seq_relationship(pooled)


def build(c):
    return AlbertForPreTraining(c) if c["model_type"] == "albert" else BertForPreTraining(c)


def losses(logits, sent_logits, mlabels, mweights, slabels):
    """(mlm_loss, sop_loss) as kiln defines them (see the top of this file)."""
    ce = torch.nn.functional.cross_entropy(logits, mlabels, reduction="none")
    w = mweights
    mlm = (ce * w).sum() / w.sum() if float(w.sum()) > 0 else ce.sum() * 0
    keep = slabels >= 0
    sop = torch.nn.functional.cross_entropy(sent_logits[keep], slabels[keep]) if bool(keep.any()) else \
        sent_logits.sum() * 0
    return mlm, sop


def no_decay(name):
    """Tensors without weight decay: biases and LayerNorm weights."""
    return "bias" in name or "LayerNorm" in name or "layer_norm" in name
