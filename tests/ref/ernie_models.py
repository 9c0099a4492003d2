"""tests/ref/ernie_models.py: ERNIE (Zhang et al. 2019; thunlp/ERNIE's
modeling.py) as kiln builds it (trainer/ernie.c), rebuilt from torch.nn
modules with kiln's parameter names, for the parity test ernie_parity.py.

The text side is torch_models' BertForPreTraining / AlbertForPreTraining
(Hugging Face's names: bert.*, cls.predictions.*, cls.seq_relationship;
albert.*, predictions.*, sop_classifier.*), post-LayerNorm, in the padded
(B, L) layout with the key padding mask. Its last NF of NL layers are
fusion layers: fusion layer f is layer l = NL - NF + f, and its entity side
lives under ernie.encoder.layer.{l}. (ALBERT: the text weights of the layer
are its group's, shared; the entity side is the layer's own.)

Entities. eids (B, L) holds the entity TABLE ROW of each token (0 = none;
always 0 past a row's length); a token with eids != 0 is aligned. The
table ernie.entity_embeddings.weight (KE, DE) is frozen (requires_grad
False: no gradient, no optimizer step). Fusion layer f:
  ein  = f == 0 ? table[eids] (W != DE: ernie.entity_projection, DE -> W)
                : eout of fusion layer f - 1
  eatt = f == 0 ? ein                  (upstream's BertLayerMix: no entity attention)
       : attention_ent.output.LayerNorm(ein + attention_ent.output.dense(
             self-attention(ein)))     (ENH heads of width W / ENH, scale
             1 / sqrt(W / ENH), keys = the aligned tokens of the same row:
             upstream's attention_mask_ent, finfo.min elsewhere)
  pre  = intermediate.dense(h1) + intermediate.dense_ent(eatt * aligned)
         (kiln's dense_ent has no bias: the text FFN's carries it, so that
         without entities a fusion layer is exactly the text layer. With
         c["dense_ent_bias"] true, upstream's layout: dense_ent has a bias,
         which reaches every token, since upstream feeds zeros, not nothing,
         through dense_ent for an unaligned token)
  act  = hidden_act(pre); the text layer goes on with act as usual
  eout = output.LayerNorm_ent(eatt + output.dense_ent(act))  (not in the last
         fusion layer, which has no output.*_ent tensors)
where h1 is the text attention's output (after its LayerNorm). Every
LayerNorm has the config's layer_norm_eps. Rows of the entity stream that
are not aligned are computed (the padded layout) but never read: their
share reaches nothing (torch.where), so they carry no gradient.

dEA head (upstream's BertEntPredictionHead):
cls.predictions_ent.transform.dense (H -> DE), hidden_act,
cls.predictions_ent.transform.LayerNorm (DE), then logits = t C^T where C
= table[cand], the (unprojected) vectors of the candidates `cand` (the
sorted distinct nonzero rows among the batch's entity inputs and labels),
at the tokens (arow, apos) whose label is not 0; dea_loss = mean CE
against the label's index in cand.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_models


class EntOutput(nn.Module):
    """output.dense_ent (I -> W) and output.LayerNorm_ent (W)"""

    def __init__(self, c, W):
        super().__init__()
        self.dense_ent = nn.Linear(c["intermediate_size"], W)
        self.LayerNorm_ent = nn.LayerNorm(W, eps=c["layer_norm_eps"])


class EntIntermediate(nn.Module):
    """intermediate.dense_ent (W -> I), with a bias when c["dense_ent_bias"]"""

    def __init__(self, c, W):
        super().__init__()
        self.dense_ent = nn.Linear(W, c["intermediate_size"], bias=bool(c.get("dense_ent_bias", False)))


class ErnieLayerEnt(nn.Module):
    """the entity side of fusion layer f of nf"""

    def __init__(self, c, f, nf):
        super().__init__()
        W = c["entity_hidden_size"]
        if f > 0:  # entity self-attention (BertAttention of width W)
            self.attention_ent = torch_models.BertAttention(dict(c, hidden_size=W))
        self.intermediate = EntIntermediate(c, W)
        if f + 1 < nf:
            self.output = EntOutput(c, W)


class ErnieEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        nl, nf = c["num_hidden_layers"], c["fusion_layers"]
        self.layer = nn.ModuleDict({str(l): ErnieLayerEnt(c, l - (nl - nf), nf) for l in range(nl - nf, nl)})


class ErnieKnowledge(nn.Module):
    """ernie.*: the frozen entity table, the projection, the fusion layers' entity side"""

    def __init__(self, c):
        super().__init__()
        self.entity_embeddings = nn.Embedding(c["entity_vocab_size"], c["entity_dim"])
        self.entity_embeddings.weight.requires_grad_(False)
        if c["entity_hidden_size"] != c["entity_dim"]:
            self.entity_projection = nn.Linear(c["entity_dim"], c["entity_hidden_size"])
        self.encoder = ErnieEncoder(c)


class EntTransform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["entity_dim"])
        self.LayerNorm = nn.LayerNorm(c["entity_dim"], eps=c["layer_norm_eps"])


class EntPrediction(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = EntTransform(c)


class ErnieBertHeads(torch_models.BertHeads):
    """cls.*: BERT's MLM and NSP heads and the dEA head"""

    def __init__(self, c):
        super().__init__(c)
        self.predictions_ent = EntPrediction(c)


class ErnieAlbertHeads(nn.Module):
    """cls.*: the dEA head alone (ALBERT's MLM and SOP heads have their own names)"""

    def __init__(self, c):
        super().__init__()
        self.predictions_ent = EntPrediction(c)


class ErnieForPreTraining(nn.Module):
    """ERNIE on BERT (model_type bert) or ALBERT (albert): MLM, NSP / SOP and dEA"""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.is_albert = c["model_type"] == "albert"
        self.act = torch_models.gelu(c["hidden_act"])
        if self.is_albert:
            self.albert = torch_models.AlbertModel(c)
            self.predictions = torch_models.AlbertMLMHead(c)
            self.sop_classifier = torch_models.SOPHead(c)
            self.cls = ErnieAlbertHeads(c)
        else:
            self.bert = torch_models.BertModel(c)
            self.cls = ErnieBertHeads(c)
        self.ernie = ErnieKnowledge(c)

    def text_layer(self, l, h, madd):
        """layer l's text attention: (h1, FFN in, FFN out, output LayerNorm)"""
        nh = self.c["num_attention_heads"]
        if self.is_albert:
            n, g = self.c["num_hidden_layers"], self.c["num_hidden_groups"]
            y = self.albert.encoder.albert_layer_groups[int(l / (n / g))].albert_layers[0]
            a = y.attention
            h1 = a.LayerNorm(h + a.dense(torch_models.attention(a.query(h), a.key(h), a.value(h), madd, nh)))
            return h1, y.ffn, y.ffn_output, y.full_layer_layer_norm
        y = self.bert.encoder.layer[l]
        s, o = y.attention.self, y.attention.output
        h1 = o.LayerNorm(o.dense(torch_models.attention(s.query(h), s.key(h), s.value(h), madd, nh)) + h)
        return h1, y.intermediate.dense, y.output.dense, y.output.LayerNorm

    def forward(self, ids, types, attn_mask, eids, mrow, mpos, arow, apos, cand):
        """(MLM logits (M, V) at (mrow, mpos), sentence logits (B, 2), dEA
        logits (NA, NC) at (arow, apos) against the candidate rows cand)"""
        c, k = self.c, self.ernie
        nl, nf, enh = c["num_hidden_layers"], c["fusion_layers"], c["entity_attention_heads"]
        text = self.albert if self.is_albert else self.bert
        h = text.embeddings(ids, types)
        if self.is_albert:
            h = self.albert.encoder.embedding_hidden_mapping_in(h)
        madd = torch_models.mask_add(attn_mask)
        aligned = (eids != 0).unsqueeze(-1)  # (B, L, 1)
        emadd = torch_models.mask_add(eids != 0)  # keys: the aligned tokens of the row
        e = None
        for l in range(nl):
            h1, ffn_in, ffn_out, ln2 = self.text_layer(l, h, madd)
            pre = ffn_in(h1)
            f = l - (nl - nf)
            if f >= 0:
                y = k.encoder.layer[str(l)]
                if f == 0:
                    e = k.entity_embeddings(eids)
                    if hasattr(k, "entity_projection"):
                        e = k.entity_projection(e)
                if hasattr(y, "attention_ent"):
                    s, o = y.attention_ent.self, y.attention_ent.output
                    ctx = torch_models.attention(s.query(e), s.key(e), s.value(e), emadd, enh)
                    e = o.LayerNorm(o.dense(ctx) + e)
                pre = pre + y.intermediate.dense_ent(torch.where(aligned, e, torch.zeros_like(e)))
                act = self.act(pre)
                if hasattr(y, "output"):
                    e = y.output.LayerNorm_ent(y.output.dense_ent(act) + e)
            else:
                act = self.act(pre)
            h = ln2(ffn_out(act) + h1)

        word = text.embeddings.word_embeddings.weight
        if self.is_albert:
            mlm = self.predictions(h[mrow, mpos], word)
            sent = self.sop_classifier.classifier(self.albert.pool(h))
        else:
            p = self.cls.predictions
            t = p.transform.LayerNorm(self.act(p.transform.dense(h[mrow, mpos])))
            mlm = torch.matmul(t, word.t()) + p.bias
            sent = self.cls.seq_relationship(self.bert.pool(h))
        tr = self.cls.predictions_ent.transform
        t = tr.LayerNorm(self.act(tr.dense(h[arow, apos])))
        dea = torch.matmul(t, k.entity_embeddings.weight[cand].t())
        return mlm, sent, dea


def dea_loss(logits, target):
    """kiln's dea_loss: mean cross-entropy over the dEA targets"""
    return F.cross_entropy(logits, target)
