"""What the UI and CLI need to know about each architecture, without importing TensorFlow.

The builders themselves live in ``fer.models``; a test checks that both registries agree and
that ``params`` is the exact count of the built model.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ArchitectureInfo:
    name: str
    title: str
    description: str
    source: str
    params: int
    # Hyperparameters that differ from the TrainConfig defaults for this architecture.
    defaults: dict[str, Any] = field(default_factory=dict)
    # Training steps per call into the backend (Keras' ``steps_per_execution``): fewer Python
    # round trips for small networks (a real mini_xception run went from 39 to 38 s an epoch;
    # see the README's Performance section). Stop and the progress bar act between calls, so a
    # call must stay well under a second or two.
    steps_per_execution: int = 1


# Khaireddin & Chen's recipe: SGD + Nesterov, plateau schedule on val accuracy, random 40x40
# crops (ten-crop TTA then matches), erasing, 300 epochs.
VGG_FER_RECIPE: dict[str, Any] = {
    "epochs": 300, "optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "l2": 5e-5,
    "lr_schedule": "plateau", "plateau_monitor": "val_accuracy", "plateau_factor": 0.75,
    "plateau_patience": 5, "dropout": 0.2, "early_stopping_patience": 0, "rotation": 10.0,
    "zoom": 0.2, "translation": 0.2, "erasing": 0.5, "crop": 40,
}

ARCHITECTURES: dict[str, ArchitectureInfo] = {
    info.name: info
    for info in [
        ArchitectureInfo(
            name="mini_xception",
            title="mini-Xception",
            description="Depthwise-separable residual CNN, ~60k parameters; fast on a CPU.",
            source="Arriaga, Ploeger, Valdenegro (2017), arXiv:1710.07557",
            params=58_423,
            # The CPU preset: 75 epochs take 50 minutes on two idle cores (38-40 s each; 100
            # epochs were no better on PublicTest); a cosine
            # decay to zero over a fixed budget beats a plateau schedule that never gets to decay.
            defaults={"epochs": 75, "learning_rate": 1e-3, "optimizer": "adam",
                      "lr_schedule": "cosine", "early_stopping_patience": 0, "l2": 1e-2,
                      "dropout": 0.0, "rotation": 10.0, "zoom": 0.1, "translation": 0.1},
            steps_per_execution=16,
        ),
        ArchitectureInfo(
            name="vgg_fer",
            title="VGG-FER (Khaireddin & Chen)",
            description="Four VGG stages of two 3x3 conv-BN-ReLU blocks (64-512) and a 2x4096 "
                        "head; 73.3% PrivateTest in the paper.",
            source="Khaireddin & Chen (2021), arXiv:2105.03588",
            params=40_380_359,
            defaults=VGG_FER_RECIPE,
        ),
        ArchitectureInfo(
            name="vgg_fer_compact",
            title="VGG-FER compact",
            description="VGG-FER's eight 3x3 conv-BN-ReLU layers (64-512) with a single 256-unit "
                        "head: 5.9M parameters (a 23 MB model to ship) and VGG-FER's recipe.",
            source="Khaireddin & Chen (2021), arXiv:2105.03588, compact head",
            params=5_873_607,
            defaults={**VGG_FER_RECIPE, "dropout": 0.3},
        ),
        ArchitectureInfo(
            name="seed_cnn_a",
            title="Seed CNN A",
            description="Five 4x4 conv layers (64-64-128-128-128) with batch norm, L2 1e-4 "
                        "and dropout; a compact baseline.",
            source="fer-lab seed notebook 000",
            params=1_315_847,
            defaults={"epochs": 60, "learning_rate": 1e-3, "l2": 1e-4, "dropout": 0.5},
        ),
        ArchitectureInfo(
            name="seed_cnn_b",
            title="Seed CNN B",
            description="Conv 36(5x5)-128-512-512 (3x3) with max-pooling and dense 256+512; "
                        "no batch norm.",
            source="fer-lab seed notebooks 001 and 003",
            params=4_307_759,
            defaults={"epochs": 60, "learning_rate": 1e-4, "dropout": 0.25, "l2": 0.0},
        ),
        ArchitectureInfo(
            name="seed_cnn_c",
            title="Seed CNN C",
            description="Conv 64(5x5)-128-512-512 (3x3) with batch norm, dense 256+512.",
            source="fer-lab seed notebook 002",
            params=4_348_679,
            defaults={"epochs": 60, "learning_rate": 5e-4, "dropout": 0.25, "l2": 0.0},
        ),
        ArchitectureInfo(
            name="vgg16_transfer",
            title="VGG16 transfer",
            description="Keras VGG16 with its first blocks frozen and a small dense head; uses "
                        "ImageNet weights only when they are already in the Keras cache.",
            source="fer-lab seed notebook 004; Simonyan & Zisserman (2014)",
            params=14_847_815,
            defaults={"epochs": 40, "learning_rate": 1e-4, "dropout": 0.5, "l2": 0.0},
        ),
    ]
}


def architecture_names() -> list[str]:
    return list(ARCHITECTURES)
