"""The pipeline's stages, one module each; every stage is a step over typed records.

- `generate`: baseline responses and worse responses (modified instruction) -> ResponsePair
- `judge`: judgements of pairs in both orders, N samples each (`judge_pairs`)
- `select`: rejection sampling, agreement threshold, label balance
- `training_data`: SFT and DPO examples from the kept judgements
- `finetune`: submit / re-attach / poll a fine-tune job, serve the result
- `classify`: the optional category filter

The functions here are the pure and streaming parts; `ste_core.steps` wires them to the run
directory, the store and the progress display, and `ste_core.pipeline` runs the steps in order.
"""
