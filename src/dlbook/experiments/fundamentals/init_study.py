"""Chapter 1, section 3: how the initialiser moves the spread of activations and gradients through
a deep fully connected network."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlbook.book import present
from dlbook.book.context import Run
from dlbook.methods.nn import layers as L
from dlbook.methods.nn import losses
from dlbook.methods.nn.init import get as get_initializer


def initialization_statistics(
    initializers=("normal", "glorot_normal", "he_normal"),
    activations=("tanh", "relu"),
    depth: int = 15,
    width: int = 256,
    batch: int = 512,
    seed: int = 0,
) -> pd.DataFrame:
    """Standard deviation of activations (forward) and of the loss gradient with respect to them
    (backward), layer by layer, through a ``depth``-layer MLP of ``width`` units, for each
    initialiser and activation.

    Inputs are standard normal; the backward pass starts from the softmax cross-entropy of 10
    random classes on a final linear layer. float64 throughout.

    Returns
    -------
    DataFrame with columns initializer, activation, layer (1..depth), activation_std (std of
    the layer's output h), gradient_std (std of dL/dh).
    """
    if depth < 2 or width < 2:
        raise ValueError(f"depth={depth!r} and width={width!r} must be at least 2")
    rows = []
    for init_name in initializers:
        init = get_initializer(init_name)
        for act in activations:
            rng = np.random.default_rng(seed)
            forward, backward = L.ACTIVATIONS[act]
            x = rng.standard_normal((batch, width))
            labels = rng.integers(0, 10, batch)
            caches, stds = [], []
            for _ in range(depth):
                params = {"W": init((width, width), rng, np.float64), "b": np.zeros(width)}
                z, c_dense = L.dense_forward(x, params)
                x, c_act = forward(z)
                caches.append((c_dense, c_act))
                stds.append(float(x.std()))
            head = {
                "W": get_initializer("glorot_normal")((width, 10), rng, np.float64),
                "b": np.zeros(10),
            }
            logits, c_head = L.dense_forward(x, head)
            _, dout = losses.softmax_cross_entropy(logits, labels)
            dout, _ = L.dense_backward(dout, c_head)
            grad_stds = [0.0] * depth
            for i in range(depth - 1, -1, -1):
                grad_stds[i] = float(dout.std())
                c_dense, c_act = caches[i]
                dout, _ = backward(dout, c_act)
                dout, _ = L.dense_backward(dout, c_dense)
            for i in range(depth):
                rows.append(
                    {
                        "initializer": init_name,
                        "activation": act,
                        "layer": i + 1,
                        "activation_std": stds[i],
                        "gradient_std": grad_stds[i],
                    }
                )
    return pd.DataFrame(rows)


def initialization_summary(stats: pd.DataFrame) -> pd.DataFrame:
    """Per initialiser and activation: activation std at the first and last layers, and the ratio
    of the gradient std at the first layer to that at the last (1 is ideal; near 0 means the
    gradient vanishes on its way back, far above 1 that it explodes)."""
    rows = []
    for (init_name, act), part in stats.groupby(["initializer", "activation"], sort=False):
        part = part.sort_values("layer")
        first, last = part.iloc[0], part.iloc[-1]
        rows.append(
            {
                "initializer": init_name,
                "activation": act,
                "activation_std_first_layer": first["activation_std"],
                "activation_std_last_layer": last["activation_std"],
                "gradient_std_ratio_first_to_last": first["gradient_std"] / last["gradient_std"],
            }
        )
    return pd.DataFrame(rows)


# -- the section -----------------------------------------------------------------------------


def initialization(run: Run) -> dict:
    """Section 3: activation and gradient spread through a deep MLP per initialiser; saves the
    last-layer spreads and gradient ratios of the pairs the story quotes."""
    settings = run.settings
    stats = initialization_statistics(
        depth=settings["init_depth"],
        width=settings["init_width"],
        batch=settings["init_batch"],
        seed=run.seed,
    )
    summary = initialization_summary(stats).set_index(["initializer", "activation"])
    small, he_relu = summary.loc[("normal", "relu")], summary.loc[("he_normal", "relu")]
    small_tanh, glorot_tanh = (
        summary.loc[("normal", "tanh")],
        summary.loc[("glorot_normal", "tanh")],
    )
    values = {
        "init_layers": settings["init_depth"],
        "init_normal_relu_last_activation_std": small["activation_std_last_layer"],
        "init_he_relu_last_activation_std": he_relu["activation_std_last_layer"],
        "init_normal_tanh_last_activation_std": small_tanh["activation_std_last_layer"],
        "init_glorot_tanh_last_activation_std": glorot_tanh["activation_std_last_layer"],
        "init_he_relu_gradient_ratio": he_relu["gradient_std_ratio_first_to_last"],
        "init_normal_relu_gradient_ratio": small["gradient_std_ratio_first_to_last"],
    }
    run.save(values)
    return {"stats": stats, "summary": summary.reset_index(), "values": values}


def init_table(result: dict) -> pd.DataFrame:
    """The initialisation summary with short column names, for the page."""
    return result["summary"].rename(
        columns={
            "activation_std_first_layer": "std, first layer",
            "activation_std_last_layer": "std, last layer",
            "gradient_std_ratio_first_to_last": "gradient std, first / last",
        }
    )


def story_initialization(result: dict) -> str:
    """What the small normal, He and Glorot do to the signal after the deep stack."""
    v = result["values"]
    n = present.number
    return (
        f"After {v['init_layers']} ReLU layers the activations of the small fixed normal have a "
        f"spread of **{n(v['init_normal_relu_last_activation_std'], 2)}**; He keeps it at "
        f"**{n(v['init_he_relu_last_activation_std'])}**, and the gradient reaching its first layer "
        f"has **{n(v['init_he_relu_gradient_ratio'])}** times the spread it had at the last layer, "
        f"against **{n(v['init_normal_relu_gradient_ratio'], 2)}** for the small normal (1 would be "
        f"perfectly balanced). With tanh the small normal ends at "
        f"**{n(v['init_normal_tanh_last_activation_std'], 2)}** and Glorot at "
        f"**{n(v['init_glorot_tanh_last_activation_std'])}** (tanh squashes, so some decay "
        "remains). The chapter's ANN and CNN use He for the ReLU layers and Glorot for the output "
        "layer."
    )
