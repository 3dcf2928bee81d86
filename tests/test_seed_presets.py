"""Each seed preset is its notebook's network, layer by layer, and defaults to its notebook's recipe.

The expected tables are written from the seed notebooks: notebook 002's is its
printed ``model.summary()``, the others follow the notebooks' code. Every row is (layer type,
detail, output shape, parameters), so a misplaced pooling layer shows in the shapes even where
the parameter count stays the same. Where the preset departs from the notebook, the preset's
``differences`` says so and a test below pins that text's claims.
"""

from __future__ import annotations

import numpy as np
import pytest

from fer.architectures import ARCHITECTURES
from fer.config import TrainConfig

keras = pytest.importorskip("keras")

import fer.models  # noqa: E402
from fer.models import build_model  # noqa: E402


def conv(filters, size, shape, params):
    return ("Conv2D", f"{filters} {size}x{size}", shape, params)


def bn(shape, params):
    return ("BatchNormalization", "", shape, params)


def relu(shape):
    return ("Activation", "relu", shape, 0)


def pool(shape):
    return ("MaxPooling2D", "2x2", shape, 0)


def drop(rate, shape):
    return ("Dropout", f"{rate:g}", shape, 0)


def dense(units, activation, params):
    return ("Dense", f"{units} {activation}", (units,), params)


# The notebooks' generators rescale pixels by 1/255 (000, 001); fer-lab does it in the model.
RESCALE = ("Rescaling", "x1/255", (48, 48, 1), 0)

# Notebook 000: create_model().
NOTEBOOK_000 = [
    RESCALE,
    conv(64, 4, (48, 48, 64), 1_088), relu((48, 48, 64)), bn((48, 48, 64), 256),
    conv(64, 4, (48, 48, 64), 65_600), relu((48, 48, 64)), bn((48, 48, 64), 256),
    pool((24, 24, 64)), drop(0.2, (24, 24, 64)),
    conv(128, 4, (24, 24, 128), 131_200), relu((24, 24, 128)), bn((24, 24, 128), 512),
    pool((12, 12, 128)), drop(0.3, (12, 12, 128)),
    conv(128, 4, (12, 12, 128), 262_272), relu((12, 12, 128)), bn((12, 12, 128), 512),
    conv(128, 4, (12, 12, 128), 262_272), relu((12, 12, 128)), bn((12, 12, 128), 512),
    pool((6, 6, 128)), drop(0.4, (6, 6, 128)),
    ("Flatten", "", (4608,), 0),
    dense(128, "linear", 589_952), relu((128,)),
    dense(7, "softmax", 903),
]


def _trunk(first_filters: int, first_params: int, first_bn: int, second_params: int):
    """Notebooks 001/002/003's four conv blocks: conv, batch norm, ReLU, pool, dropout 0.25."""
    rows = []
    for filters, size, params, bn_params, side in (
            (first_filters, 3, first_params, first_bn, 48), (128, 5, second_params, 512, 24),
            (512, 3, 590_336, 2_048, 12), (512, 3, 2_359_808, 2_048, 6)):
        shape = (side, side, filters)
        half = (side // 2, side // 2, filters)
        rows += [conv(filters, size, shape, params), bn(shape, bn_params), relu(shape), pool(half),
                 drop(0.25, half)]
    return rows + [("Flatten", "", (4608,), 0)]


# Notebook 002's model.summary(), row by row (it has no rescaling: its generator only flips).
NOTEBOOK_002 = _trunk(64, 640, 256, 204_928) + [
    dense(256, "linear", 1_179_904), bn((256,), 1_024), relu((256,)), drop(0.25, (256,)),
    dense(512, "linear", 131_584), bn((512,), 2_048), relu((512,)), drop(0.25, (512,)),
    dense(7, "softmax", 3_591),
]

# Notebook 001: conv 36 (3x3) then notebook 002's blocks; head Dense 128 relu, dropout 0.5.
NOTEBOOK_001 = [RESCALE, *_trunk(36, 360, 144, 115_328),
                dense(128, "relu", 589_952), drop(0.5, (128,)), dense(7, "softmax", 903)]

# Notebook 003: notebook 001's convolutions with Dense 256 and 512 (BN, ReLU, dropout 0.25).
NOTEBOOK_003 = [RESCALE, *_trunk(36, 360, 144, 115_328), *NOTEBOOK_002[-9:]]

# Notebook 004 (its README): VGG16 without top, Dense 32 + Leaky ReLU, batch norm, Dense 7.
NOTEBOOK_004 = [
    ("Concatenate", "gray to 3 channels", (48, 48, 3), 0),
    ("Normalization", "ImageNet mean", (48, 48, 3), 0),
    ("Functional", "vgg16", (1, 1, 512), 14_714_688),
    ("Flatten", "", (512,), 0),
    dense(32, "linear", 16_416), ("LeakyReLU", "", (32,), 0), bn((32,), 128),
    dense(7, "softmax", 231),
]

EXPECTED = {"seed_cnn_a": NOTEBOOK_000, "seed_cnn_b": NOTEBOOK_001, "seed_cnn_b2": NOTEBOOK_003,
            "seed_cnn_c": NOTEBOOK_002, "vgg16_transfer": NOTEBOOK_004}


def describe(layer) -> str:
    kind = type(layer).__name__
    if kind == "Conv2D":
        return f"{layer.filters} {layer.kernel_size[0]}x{layer.kernel_size[1]}"
    if kind == "Dense":
        return f"{layer.units} {layer.activation.__name__}"
    if kind == "Activation":
        return layer.activation.__name__
    if kind == "Dropout":
        return f"{layer.rate:g}"
    if kind == "MaxPooling2D":
        return "x".join(map(str, layer.pool_size))
    if kind == "Rescaling":
        return f"x1/{1 / layer.scale:g}" if layer.offset == 0 else f"x{layer.scale:g}{layer.offset:+g}"
    if kind == "Concatenate":
        return "gray to 3 channels"
    if kind == "Normalization":
        return ("ImageNet mean" if np.allclose(np.ravel(layer.input_mean), fer.models.IMAGENET_BGR_MEAN)
                else "?")
    if kind == "Functional":
        return layer.name
    return ""


def layer_table(model) -> list[tuple]:
    return [(type(layer).__name__, describe(layer), tuple(layer.output.shape[1:]), layer.count_params())
            for layer in model.layers[1:]]  # [0] is the input


@pytest.fixture(autouse=True)
def fresh_keras_session():
    yield
    keras.backend.clear_session()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_network_is_the_notebooks_layer_by_layer(name):
    model = build_model(TrainConfig.for_architecture(name))
    assert layer_table(model) == EXPECTED[name]
    assert model.count_params() == sum(row[3] for row in EXPECTED[name]) == ARCHITECTURES[name].params


def test_notebook_002_totals_as_printed():
    """Total params: 4,478,727; Non-trainable params: 3,968 (batch-norm moving statistics)."""
    model = build_model(TrainConfig.for_architecture("seed_cnn_c"))
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert (model.count_params(), non_trainable) == (4_478_727, 3_968)


def test_notebook_000_regularises_the_convolutions_only():
    model = build_model(TrainConfig.for_architecture("seed_cnn_a"))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    denses = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.kernel_regularizer.get_config()["l2"] for layer in convs] == pytest.approx([1e-4] * 5)
    assert all(layer.kernel_regularizer is None for layer in denses)


# The recipes, from each notebook's compile/fit cells (TrainConfig's own defaults fill the rest:
# no class weights, no label smoothing, no erasing or crops).
RECIPES = {
    # 000: Adam(0.0003), batch 64, horizontal_flip, EarlyStopping(val_accuracy, patience 10,
    # restore_best_weights), epochs=100, l2 1e-4.
    "seed_cnn_a": dict(optimizer="adam", learning_rate=3e-4, batch_size=64, epochs=100,
                       lr_schedule="none", early_stopping_patience=10, l2=1e-4, dropout=0.2,
                       augment=True, flip=True, rotation=0.0, zoom=0.0, translation=0.0, shear=0.0),
    # 001: Adam(learning_rate=0.0001), batch_size=16, epochs=20; flips, and the rest of its
    # augmentation only on request (NOTEBOOK_001_AUGMENTATION below, see the preset's differences).
    "seed_cnn_b": dict(optimizer="adam", learning_rate=1e-4, batch_size=16, epochs=20,
                       lr_schedule="none", early_stopping_patience=0, l2=0.0, dropout=0.25,
                       augment=True, flip=True, rotation=0.0, zoom=0.0, translation=0.0, shear=0.0),
    # 003: the same, epochs = 50.
    "seed_cnn_b2": dict(optimizer="adam", learning_rate=1e-4, batch_size=16, epochs=50,
                        lr_schedule="none", early_stopping_patience=0, l2=0.0, dropout=0.25,
                        augment=True, flip=True, rotation=0.0, zoom=0.0, translation=0.0, shear=0.0),
    # 002: Adam(lr=0.0005), batch 64, horizontal_flip, ReduceLROnPlateau(val_loss, factor 0.1,
    # patience 2, min_lr 0.00001), epochs = 15.
    "seed_cnn_c": dict(optimizer="adam", learning_rate=5e-4, batch_size=64, epochs=15,
                       lr_schedule="plateau", plateau_monitor="val_loss", plateau_factor=0.1,
                       plateau_patience=2, plateau_min_lr=1e-5, early_stopping_patience=0, l2=0.0,
                       dropout=0.25, augment=True, flip=True, rotation=0.0, zoom=0.0,
                       translation=0.0, shear=0.0),
    # 004: Adam 1e-4, batch 512, 20 epochs, no augmentation, no dropout, no regularisation.
    "vgg16_transfer": dict(optimizer="adam", learning_rate=1e-4, batch_size=512, epochs=20,
                           lr_schedule="none", early_stopping_patience=0, l2=0.0, dropout=0.0,
                           augment=False),
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_preset_defaults_are_the_notebooks_recipe(name):
    config = TrainConfig.for_architecture(name).to_dict()
    assert {key: config[key] for key in RECIPES[name]} == RECIPES[name]
    assert (config["class_weights"], config["label_smoothing"], config["erasing"], config["crop"]) == (
        False, 0.0, 0.0, 0)


# 001: ImageDataGenerator(rotation_range=20, width_shift_range=0.2, height_shift_range=0.2,
# shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode='nearest').
NOTEBOOK_001_AUGMENTATION = dict(rotation=20.0, translation=0.2, shear=0.2, zoom=0.2)


def test_notebook_001s_augmentation_is_one_setting_away_and_the_preset_says_so():
    from fer.architectures import SEED_B_NOTEBOOK_AUGMENTATION

    assert SEED_B_NOTEBOOK_AUGMENTATION == NOTEBOOK_001_AUGMENTATION
    for name in ("seed_cnn_b", "seed_cnn_b2"):
        config = TrainConfig.for_architecture(name, **NOTEBOOK_001_AUGMENTATION)
        assert (config.flip, config.rotation, config.translation, config.shear, config.zoom) == (
            True, 20.0, 0.2, 0.2, 0.2)
        assert "rotation 20, shifts 0.2, shear 0.2, zoom 0.2" in ARCHITECTURES[name].differences


def test_every_seed_preset_says_where_it_departs_from_its_notebook():
    for name in EXPECTED:
        assert "PublicTest" in ARCHITECTURES[name].differences or name == "vgg16_transfer"
    assert "Keras cache" in ARCHITECTURES["vgg16_transfer"].differences


def test_dropout_value_scales_the_notebooks_other_rates():
    def rates(name, dropout):
        model = build_model(TrainConfig.for_architecture(name, dropout=dropout))
        return [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]

    assert rates("seed_cnn_a", 0.3) == pytest.approx([0.3, 0.45, 0.6])
    # Notebook 001's head keeps twice the blocks' rate, capped below 1 where Keras needs it.
    assert rates("seed_cnn_b", 0.6) == pytest.approx([0.6] * 4 + [0.9])
    assert rates("vgg16_transfer", 0.3) == pytest.approx([0.3])


def _write_vgg16_notop_weights(path) -> list[np.ndarray]:
    """A stand-in for Keras' cached ImageNet file: the same layout, other numbers."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(48, 48, 3))
    rng = np.random.default_rng(0)
    base.set_weights([rng.normal(0, 0.01, w.shape).astype("float32") for w in base.get_weights()])
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    return base.get_weights()


def test_vgg16_with_cached_imagenet_weights_freezes_up_to_block4_conv1(tmp_path, monkeypatch):
    path = tmp_path / fer.models.VGG16_WEIGHTS.name
    expected_weights = _write_vgg16_notop_weights(path)
    monkeypatch.setattr(fer.models, "VGG16_WEIGHTS", path)
    model = build_model(TrainConfig.for_architecture("vgg16_transfer"))
    base = model.get_layer("vgg16")
    frozen = [layer.name for layer in base.layers if layer.weights and not layer.trainable]
    assert frozen == ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
                      "block3_conv1", "block3_conv2", "block3_conv3"]
    assert all(layer.trainable for layer in base.layers[base.layers.index(base.get_layer("block4_conv1")):])
    for loaded, saved in zip(base.get_weights(), expected_weights, strict=True):
        np.testing.assert_array_equal(loaded, saved)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # 1,735,488 frozen VGG16 weights and the head's 64 batch-norm statistics do not train.
    assert trainable == ARCHITECTURES["vgg16_transfer"].params - 1_735_488 - 64


def test_vgg16_without_cached_weights_trains_everything(tmp_path, monkeypatch):
    monkeypatch.setattr(fer.models, "VGG16_WEIGHTS", tmp_path / "absent.h5")
    model = build_model(TrainConfig.for_architecture("vgg16_transfer"))
    assert all(layer.trainable for layer in model.get_layer("vgg16").layers)
