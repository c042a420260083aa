"""PEFT comparison: STRATO-PEFT against LoRA, AdaLoRA and DoRA (in progress: the sandboxed code scorer so far)."""
