"""``rctc demo``: the embedded default job, end to end, with no download.

Compiles the bundled LeNet for rct mode, prints the static energy / memory estimate, trains
on scikit-learn's bundled 8x8 digits (80/20 seeded split) with a progress bar, evaluates,
and prints the accuracy beside an fp32 run of the same recipe, plus the savings.
"""

from __future__ import annotations

import time
from typing import Any

import click

from rctc.cli import values
from rctc.cli.common import emit_json, fail_cleanly, progress, show_progress, use_backend
from rctc.errors import RctcError

# the digits recipe used by the demo and the README's accuracy table
DIGITS_RECIPE: dict[str, Any] = {"batch_size": 32, "optimizer": "sgd", "lr": 0.2}
DIGITS_EPOCHS = 30


def _train(mode: str, epochs: int, seed: int, show_bar: bool) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    import rctc
    from rctc.data import load_data
    from rctc.models import path
    from rctc.runtime.trainer import run_length

    train, test = load_data("digits:train"), load_data("digits:test")
    m = rctc.compile(path("lenet"), mode=mode, seed=seed, **DIGITS_RECIPE)
    use_backend(m, None)  # as `rctc train`: native for rct when a C compiler is found, else one line why
    total = run_length(len(train), m.batch_size, epochs, None, keep_last=False)
    with progress(show_bar, total, f"training {mode:<4}", lambda r: f"loss {r.loss:.3f}") as advance:
        summary = m.train(train.x, train.y, epochs=epochs, seed=seed, on_step=advance)
    return m, summary, m.evaluate(test.x, test.y)


def _pct(saved: float) -> str:
    return f"{100 * saved:.1f}% less" if saved >= 0 else f"{-100 * saved:.1f}% more"


@click.command("demo")
@click.option("--epochs", type=values.COUNT, default=DIGITS_EPOCHS, show_default=True)
@click.option("--seed", type=values.SEED, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@fail_cleanly
def command(epochs: int, seed: int, quiet: bool, as_json: bool) -> None:
    """Compile, estimate, train and evaluate the bundled LeNet on the bundled digits (rct vs fp32)."""
    if epochs < 1:
        raise RctcError(f"--epochs must be >= 1, got {epochs}")
    t0 = time.perf_counter()
    echo = (lambda s: None) if as_json else click.echo
    show_bar = show_progress(quiet or as_json)
    echo("rctc demo: bundled LeNet on scikit-learn's 8x8 digits, seeded 80/20 train/test split")
    import rctc
    from rctc.models import path

    est = rctc.compile(path("lenet"), mode="rct", seed=seed, **DIGITS_RECIPE).estimate()
    pred = est["predicted"]
    echo(
        f"static estimate per training step (batch {DIGITS_RECIPE['batch_size']}): "
        f"{pred['energy_pj_per_step'] / 1e6:.2f} uJ, peak memory {pred['peak_memory_bytes'] / 1024:.1f} KiB"
    )
    rct_model, rct_sum, rct_eval = _train("rct", epochs, seed, show_bar)
    fp_model, fp_sum, fp_eval = _train("fp32", epochs, seed, show_bar)
    final_bits = rct_sum.get("final_bits", {})
    result = {
        "rct": {"test_accuracy": rct_eval["accuracy"], "test_loss": rct_eval["loss"],
                "ms_per_step": rct_sum["ms_per_step"], "final_bits": final_bits, "backend": rct_model.backend,
                "mean_bits": sum(final_bits.values()) / max(len(final_bits), 1)},
        "fp32": {"test_accuracy": fp_eval["accuracy"], "test_loss": fp_eval["loss"],
                 "ms_per_step": fp_sum["ms_per_step"], "backend": fp_model.backend},
        "predicted": pred,
        "savings": rct_model.estimate()["savings"],  # at the bits the controller ended with
        "epochs": epochs,
        "seconds": time.perf_counter() - t0,
    }
    if as_json:
        emit_json(result)
    else:
        _print_result(result)


def _print_result(result: dict[str, Any]) -> None:
    rct, fp = result["rct"], result["fp32"]
    click.echo("")
    click.echo(f"{'mode':<6} {'test accuracy':>13} {'ms/step':>8}  backend")
    click.echo(f"{'rct':<6} {rct['test_accuracy']:>13.4f} {rct['ms_per_step']:>8.2f}  {rct['backend']:<7} "
               f"(weights end at {rct['mean_bits']:.1f} bits on average)")
    click.echo(f"{'fp32':<6} {fp['test_accuracy']:>13.4f} {fp['ms_per_step']:>8.2f}  {fp['backend']}")
    click.echo("")
    click.echo("estimated savings of one rct training step at the final bits (negative: rct costs more):")
    for base in ("fp32", "qat"):
        s = result["savings"][f"vs_{base}"]
        click.echo(
            f"  vs {base:<4}: GEMM energy {_pct(s['gemm_energy'])}, total energy {_pct(s['total_energy'])}, "
            f"parameter memory {_pct(s['parameter_memory'])} ({_pct(s['parameter_memory_at_max_bits'])} at "
            f"max bits), parameter movement energy {_pct(s['parameter_movement_energy'])}"
        )
    click.echo(f"done in {result['seconds']:.1f} s")
