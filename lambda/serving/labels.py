"""The 10 classes, in the order of the model's outputs: the one list training, verification,
the report and the function all use."""

LABELS = (
    "dress", "hat", "longsleeve", "outwear", "pants",
    "shirt", "shoes", "shorts", "skirt", "t-shirt",
)  # fmt: skip
