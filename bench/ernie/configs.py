# bench/ernie/configs.py: writes plain-base.json and ernie-base.json, the two
# pretraining configs bench/ernie/run and bench/ernie/seeds start from, into
# the current directory. Environment: THREADS (2), HIDDEN (256), LAYERS (4),
# FUSION (2), HIDE (1), DEA_WEIGHT (0.3; 1 = upstream's, left out of the config). The plain model: BERT, HIDDEN wide, LAYERS layers,
# HIDDEN / 64 heads, FFN 4 x HIDDEN, sequence 128, batch 32, whole-word
# masking, LAMB lr 1e-2 with a linear decay, no dropout, valid_fraction 0.05,
# seed 42, BERT's uncased vocabulary; ERNIE = the same plus "entities" and a
# knowledge section (the latest embedding, FUSION fusion layers, 4 entity
# heads, dEA on at weight DEA_WEIGHT, hide_masked_entities = HIDE). The callers set the budget,
# the warmup, the seed and the checkpoint directory.
import json, os

T = int(os.environ.get("THREADS", "2"))
H, NL = int(os.environ.get("HIDDEN", "256")), int(os.environ.get("LAYERS", "4"))
base = {"model": {"type": "bert", "hidden_size": H, "num_hidden_layers": NL, "num_attention_heads": max(1, H // 64),
                  "intermediate_size": 4 * H, "max_position_embeddings": 128, "hidden_dropout_prob": 0,
                  "attention_probs_dropout_prob": 0},
        "data": {"objectives": ["wwm"], "seq_len": 128, "batch_size": 32, "seed": 42, "valid_every": 0,
                 "valid_fraction": 0.05, "vocab": "bert"},
        "optimizer": {"type": "lamb", "lr": 1e-2, "warmup_steps": -1, "schedule": "linear"},
        "checkpoint": {"every": 0, "keep": 1},
        "threads": T}
ernie = json.loads(json.dumps(base))
ernie["data"]["objectives"].append("entities")
ernie["knowledge"] = {"embedding": "latest", "fusion_layers": int(os.environ.get("FUSION", "2")),
                      "entity_attention_heads": 4, "dea": True,
                      "hide_masked_entities": os.environ.get("HIDE", "1") == "1"}
w = float(os.environ.get("DEA_WEIGHT", "0.3"))
if w != 1:
    ernie["knowledge"]["dea_weight"] = w
json.dump(base, open("plain-base.json", "w"), indent=1)
json.dump(ernie, open("ernie-base.json", "w"), indent=1)
