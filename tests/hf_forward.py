"""Runs transformers' BertModel on token ids (a reference implementation for the conversion tests).

    python tests/hf_forward.py MODEL_DIR INPUTS.npz OUTPUT.npz

INPUTS holds input_ids, input_mask, segment_ids; OUTPUT gets every layer's hidden states and the
pooled output, in float64. Run in an interpreter that has transformers and torch.
"""

import sys

import numpy as np
import torch
from transformers import BertModel


def main(model_dir, inputs_path, output_path):
    inputs = np.load(inputs_path)
    model = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(inputs["input_ids"].astype(np.int64)),
            attention_mask=torch.from_numpy(inputs["input_mask"].astype(np.int64)),
            token_type_ids=torch.from_numpy(inputs["segment_ids"].astype(np.int64)),
            output_hidden_states=True,
        )
    layers = np.stack([h.double().numpy() for h in out.hidden_states[1:]])
    np.savez(output_path, layers=layers, pooled=out.pooler_output.double().numpy())


if __name__ == "__main__":
    main(*sys.argv[1:])
