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
    # Where and why the preset departs from its source ("" where it does not).
    differences: str = ""
    # Training steps per call into the backend (Keras' ``steps_per_execution``): fewer Python
    # round trips for small networks. Stop and the progress bar act between calls, so a call
    # must stay well under a second or two.
    steps_per_execution: int = 1


# Khaireddin & Chen's recipe: SGD + Nesterov, plateau schedule on val accuracy, random 40x40
# crops (ten-crop TTA then matches), erasing, 300 epochs.
VGG_FER_RECIPE: dict[str, Any] = {
    "epochs": 300, "optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "l2": 5e-5,
    "lr_schedule": "plateau", "plateau_monitor": "val_accuracy", "plateau_factor": 0.75,
    "plateau_patience": 5, "dropout": 0.2, "early_stopping_patience": 0, "rotation": 10.0,
    "zoom": 0.2, "translation": 0.2, "erasing": 0.5, "crop": 40,
}

# The seed notebooks 000 and 002 flip faces at random and nothing else.
FLIP_ONLY: dict[str, Any] = {"augment": True, "flip": True, "rotation": 0.0, "zoom": 0.0,
                             "translation": 0.0, "shear": 0.0, "erasing": 0.0, "crop": 0}

# Notebook 001's augmentation (003 trains with it too): ImageDataGenerator's rotation 20, shifts
# 0.2, shear 0.2 (degrees: ImageDataGenerator reads shear_range as an angle), zoom 0.2, and flips.
SEED_B_NOTEBOOK_AUGMENTATION: dict[str, Any] = {"rotation": 20.0, "zoom": 0.2, "translation": 0.2,
                                                "shear": 0.2}
# Notebook 001's recipe (Adam 1e-4, batch 16), with flips only: see SEED_B_DIFFERENCES.
SEED_B_RECIPE: dict[str, Any] = {
    "batch_size": 16, "optimizer": "adam", "learning_rate": 1e-4, "lr_schedule": "none",
    "l2": 0.0, "dropout": 0.25, **FLIP_ONLY, "early_stopping_patience": 0,
}
SEED_B_DIFFERENCES = (
    "Augmentation is flips only. With the notebook's (rotation 20, shifts 0.2, shear 0.2, zoom 0.2) "
    "this network stays at the majority class for its first epochs, as it did in the notebook: "
    "25.0% PublicTest accuracy after one epoch and 26.7% after two, against 30.2% and 38.0% with "
    "flips only (fer-lab on FER2013; see the README). Set those four values to train as the notebook "
    "did. Validation is FER2013's PublicTest, not the notebook's separate validation folder; the "
    "zoom scales both axes by one factor where ImageDataGenerator draws one per axis.")

ARCHITECTURES: dict[str, ArchitectureInfo] = {
    info.name: info
    for info in [
        ArchitectureInfo(
            name="mini_xception",
            title="mini-Xception",
            description="Depthwise-separable residual CNN, ~60k parameters; fast on a CPU.",
            source="Arriaga, Ploeger, Valdenegro (2017), arXiv:1710.07557",
            params=58_423,
            # The CPU preset: a fixed budget of 75 epochs (100 were no better on PublicTest) with a
            # cosine decay to zero, which beat a plateau schedule that never got to decay.
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
            name="vgg_fer_cpu",
            title="VGG-FER CPU",
            description="VGG-FER's eight 3x3 conv-BN-ReLU layers at half width (32-256) with one "
                        "256-unit head, random 40x40 crops, SGD + Nesterov with a cosine decay "
                        "over 60 epochs: sized for a few hours on a 2-core CPU.",
            source="Khaireddin & Chen (2021), arXiv:2105.03588, half width; fer-lab's CPU preset",
            params=1_767_399,
            # VGG-FER's augmentation and optimizer; a schedule sized to the whole run (cosine to
            # zero) instead of a plateau schedule that a short run never gets to decay.
            defaults={**VGG_FER_RECIPE, "epochs": 60, "lr_schedule": "cosine", "dropout": 0.3},
        ),
        ArchitectureInfo(
            name="seed_cnn_a",
            title="Seed CNN A (notebook 000)",
            description="Five 4x4 convolutions (64, 64 | 128 | 128, 128), each ReLU then batch "
                        "norm, L2 1e-4, max-pooling and dropout 0.2/0.3/0.4 after each stage; "
                        "Dense 128. Adam 3e-4, batch 64, flips, early stopping on validation "
                        "accuracy (patience 10), up to 100 epochs.",
            source="fer-lab seed notebook 000",
            params=1_315_335,
            defaults={"epochs": 100, "batch_size": 64, "optimizer": "adam", "learning_rate": 3e-4,
                      "lr_schedule": "none", "l2": 1e-4, "dropout": 0.2, **FLIP_ONLY,
                      "early_stopping_patience": 10},
            differences="Validation is FER2013's PublicTest, not a random 20% of the training "
                        "images (so all of them train), and it is not flipped. The dropout value "
                        "sets the first stage's rate; the next two keep the notebook's 1.5x and 2x.",
        ),
        ArchitectureInfo(
            name="seed_cnn_b",
            title="Seed CNN B (notebook 001)",
            description="Convolutions 36 (3x3), 128 (5x5), 512, 512 (3x3), each batch norm, ReLU, "
                        "max-pooling, dropout 0.25; Dense 128 and dropout 0.5. Adam 1e-4, batch "
                        "16, flips (the notebook also rotates, shifts, shears and zooms), 20 epochs.",
            source="fer-lab seed notebooks 001 (and 003's trunk)",
            params=3_661_439,
            defaults={**SEED_B_RECIPE, "epochs": 20},
            differences=SEED_B_DIFFERENCES + " The head's dropout is twice the dropout value.",
        ),
        ArchitectureInfo(
            name="seed_cnn_b2",
            title="Seed CNN B, two-layer head (notebook 003)",
            description="Seed CNN B's convolutions with notebook 003's head: Dense 256 and Dense "
                        "512, each batch norm, ReLU, dropout 0.25. Seed CNN B's recipe, 50 epochs.",
            source="fer-lab seed notebook 003",
            params=4_388_735,
            defaults={**SEED_B_RECIPE, "epochs": 50},
            differences=SEED_B_DIFFERENCES,
        ),
        ArchitectureInfo(
            name="seed_cnn_c",
            title="Seed CNN C (notebook 002)",
            description="Convolutions 64 (3x3), 128 (5x5), 512, 512 (3x3) and Dense 256 + 512, "
                        "each batch norm, ReLU, dropout 0.25 (4,478,727 parameters, as the "
                        "notebook prints). Adam 5e-4, batch 64, flips, learning rate x0.1 after 2 "
                        "epochs without a lower validation loss (down to 1e-5), 15 epochs.",
            source="fer-lab seed notebook 002",
            params=4_478_727,
            defaults={"epochs": 15, "batch_size": 64, "optimizer": "adam", "learning_rate": 5e-4,
                      "lr_schedule": "plateau", "plateau_monitor": "val_loss",
                      "plateau_factor": 0.1, "plateau_patience": 2, "plateau_min_lr": 1e-5,
                      "l2": 0.0, "dropout": 0.25, **FLIP_ONLY, "early_stopping_patience": 0},
            differences="Validation is FER2013's PublicTest; the notebook validates on the whole "
                        "test folder (PublicTest and PrivateTest) and flips it at random. As in "
                        "the notebook, pixels enter unscaled (0-255). The saved model is the epoch "
                        "with the best validation accuracy, not the last.",
        ),
        ArchitectureInfo(
            name="vgg16_transfer",
            title="VGG16 transfer (notebook 004)",
            description="Keras VGG16 without its top, frozen up to block4_conv1, then Dense 32 "
                        "with Leaky ReLU, batch norm and the softmax (the notebook's best row). "
                        "Adam 1e-4, batch 512, no augmentation, 20 epochs.",
            source="fer-lab seed notebook 004; Simonyan & Zisserman (2014)",
            params=14_731_463,
            defaults={"epochs": 20, "batch_size": 512, "optimizer": "adam", "learning_rate": 1e-4,
                      "lr_schedule": "none", "l2": 0.0, "dropout": 0.0, "augment": False,
                      "early_stopping_patience": 0},
            differences="ImageNet weights are used only if they are already in the Keras cache "
                        "(~/.keras/models/; fer-lab never downloads). Without them nothing is "
                        "frozen and the whole VGG16 trains from random weights: expect a plain "
                        "CNN's accuracy, far from the notebook's 65%. Faces are gray copied to three "
                        "channels minus ImageNet's mean (VGG16's own preprocessing). Dropout and "
                        "L2, columns of the notebook's table, apply to the Dense 32 layer (off by "
                        "default, as in its best row).",
        ),
    ]
}


def architecture_names() -> list[str]:
    return list(ARCHITECTURES)
