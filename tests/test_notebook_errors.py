"""In a notebook, the kit's errors show as one line, and the kernel carries on."""
from __future__ import annotations

import nbformat
from nbclient import NotebookClient


def run_cells(*sources: str, env_cell: str = "") -> list:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(env_cell)] + [nbformat.v4.new_code_cell(s) for s in sources]
    NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True).execute()
    return nb.cells[1:]


def all_text(cell) -> str:
    """What the learner sees: printed text, or the traceback lines of an error (which must fail the cell)."""
    parts = []
    for out in cell.outputs:
        parts.append(out.get("text", ""))
        if out.get("output_type") == "error":
            parts.append("\n".join(out["traceback"]))
    return "".join(parts)


def failed(cell) -> bool:
    return any(out.get("output_type") == "error" for out in cell.outputs)


def test_bad_input_is_one_line_and_the_kernel_survives(tmp_path):
    cells = run_cells(
        "import celerylab\ncelerylab.run_worker(celerylab.create_app('x'), pool='turbo').__enter__()",
        "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "celerylab.current_broker().stop(); celerylab.start_broker(port=s.getsockname()[1])",
        "print('still alive', celerylab.start_broker().embedded)",
        env_cell=f"import os; os.environ.pop('CELERYLAB_BROKER_URL', None); os.environ['CELERYLAB_LOG_DIR'] = {str(tmp_path)!r}",
    )
    assert failed(cells[0]) and failed(cells[1]) and not failed(cells[2])  # nbval sees the errors
    pool_error, port_error, alive = (all_text(c) for c in cells)
    assert pool_error.strip() == "UnknownPoolError: unknown pool 'turbo': choose one of threads, solo"
    assert port_error.strip().startswith("PortInUseError: port ") and port_error.count("\n") <= 1
    assert "Traceback" not in pool_error + port_error
    assert alive.strip() == "still alive True"


def test_unreachable_broker_url_in_a_notebook(tmp_path):
    from celerylab.ports import free_port

    cells = run_cells(
        "import celerylab\ncelerylab.create_app('x')",
        env_cell=f"import os; os.environ['CELERYLAB_BROKER_URL'] = 'redis://127.0.0.1:{free_port()}/0'",
    )
    assert failed(cells[0])
    text = all_text(cells[0]).strip()
    assert text.startswith("BrokerUnreachableError: cannot reach the broker in CELERYLAB_BROKER_URL")
    assert "\n" not in text
