"""Entry point of the 2-process test: runs a training script and writes this process's view of the outcome."""

import hashlib
import importlib
import json
import os
import sys

from transformers import TrainerCallback


class WeightsDigest(TrainerCallback):
    """SHA-256 of the final (selected) model's weights as this process holds them."""

    digest = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        self.digest = digest.hexdigest()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    script, argv = sys.argv[1], sys.argv[2:]
    callback = WeightsDigest()
    results = importlib.import_module(script).main(argv, callbacks=[callback])
    output_dir = argv[argv.index("--output_dir") + 1]
    metrics = {k: v for k, v in results.items() if k.startswith(("eval_", "test_")) and not k.endswith(("_runtime", "_second"))}
    with open(os.path.join(output_dir, f"rank{os.environ.get('RANK', '0')}.json"), "w") as handle:
        json.dump({"metrics": metrics, "weights": callback.digest, "world_size": os.environ.get("WORLD_SIZE")}, handle)
