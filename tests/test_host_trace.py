"""convfirst.cost.host_trace: the host-side events of a real jax.profiler trace, totalled per call."""
import jax
import jax.numpy as jnp

from convfirst.cost import host_trace


def test_normalize_merges_numbered_names():
    assert host_trace.normalize("fusion.123 buffer 7") == "fusion.# buffer #"
    assert len(host_trace.normalize("x" * 200, width=50)) == 50


def test_summarize_totals_per_call():
    events = [("python", "Execute 1", 0, 2_000_000), ("python", "Execute 2", 5, 4_000_000),
              ("xla", "thunk", 0, 1_000_000)]
    rows = host_trace.summarize(events, calls=2)
    assert rows[0] == {"thread": "python", "event": "Execute #", "per_call": 1.0, "ms_per_call": 3.0}
    assert rows[1]["event"] == "thunk" and rows[1]["ms_per_call"] == 0.5


def test_trace_calls_finds_the_jitted_call(tmp_path):
    f = jax.jit(lambda x: jnp.sin(x) @ x)
    x = jnp.ones((64, 64))
    rows = host_trace.trace_calls(lambda: f(x), calls=3, trace_dir=str(tmp_path))
    assert rows and all(r["ms_per_call"] >= 0 for r in rows)
    assert any("PjitFunction" in r["event"] for r in rows), [r["event"] for r in rows]
    assert "host time per call" in host_trace.format_summary(rows)
