"""Stage train: train the Xception classifier (from scratch or ImageNet), or load an existing one.

The params and the files they name are checked first (pipeline/sources.py: a missing file, a bad URL,
a weights-only .h5 fail in a second); TensorFlow is imported only then (pipeline/fit.py)."""

from pathlib import Path

from pipeline import cli, files, params, paths, sources


def main() -> None:
    p = params.load()
    t, r = p.train, p.train.chosen
    download_dir = Path(p.data.download_dir)
    if t.mode == "load":
        source, kind = sources.model_file(t, download_dir)
    else:
        if r.freeze_base and r.weights == "none":
            raise cli.UserError(
                f"train.{t.recipe}.freeze_base: true trains a head on random features (train.{t.recipe}.weights: "
                "none); set it to false or give ImageNet weights"
            )
        weights = sources.resolve_weights(r.weights, t.imagenet_url, download_dir)
    from pipeline import fit

    model, info, history = fit.load(p, source, kind) if t.mode == "load" else fit.train(p, weights)
    with files.atomic_path(paths.MODEL) as tmp:
        model.save(tmp)
    files.write_json(paths.MODEL_INFO, info)
    with files.atomic_path(paths.HISTORY) as tmp:
        history.to_csv(tmp, index=False)
    files.write_json(
        paths.TRAIN_METRICS,
        {k: info[k] for k in ("weights", "recipe", "format", "val_accuracy", "input_size", "parameters") if k in info}
        | {"train_seconds": info.get("train_seconds", 0)},
    )
    print(f"model: {paths.MODEL} ({info['weights']} weights, val accuracy {info['val_accuracy']:.4f})")


if __name__ == "__main__":
    cli.run(main)
