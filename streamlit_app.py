"""fer-lab: the Streamlit entry point (``streamlit run streamlit_app.py``).

Pages only collect settings and read run folders; training runs in background processes.
The page scripts live in app_pages/, not pages/: with a pages/ folder next to this file Streamlit
serves a deep link such as /runs on a fresh server through its legacy file-based navigation,
without running this script (no sidebar, no page config).
"""

import streamlit as st

from app_pages.access import actions_allowed, sidebar_status
from fer.queue import MAX_RUNS_LIMIT, QueueError, ensure_dispatcher, env_max_runs, max_runs, set_max_runs
from fer.runs import experiments_dir, list_runs

st.set_page_config(page_title="fer-lab", page_icon=":material/mood:", layout="wide")

train = st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train")


def home() -> None:
    # Streamlit serves the default page at "/" only; sending "/" on to "/train" makes /train work too.
    st.switch_page(train)


page = st.navigation([
    st.Page(home, title="fer-lab", default=True, visibility="hidden"),
    train,
    st.Page("app_pages/runs.py", title="Runs", icon=":material/monitoring:", url_path="runs"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page("app_pages/sweep.py", title="Sweeps", icon=":material/tune:", url_path="sweeps"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/grid_on:", url_path="evaluate"),
    st.Page("app_pages/predict.py", title="Predict", icon=":material/face:", url_path="predict"),
    st.Page("app_pages/dataset.py", title="Dataset", icon=":material/photo_library:", url_path="dataset"),
])



def save_max_runs() -> None:
    if not actions_allowed():
        return
    try:
        set_max_runs(experiments_dir(), int(st.session_state["queue.max_runs"]))
    except (QueueError, OSError) as exc:
        st.session_state["queue.error"] = str(exc)


def queue_settings(runs: list) -> None:
    """How many runs train at once, and the queue kept moving (a killed dispatcher is restarted)."""
    root = experiments_dir()
    waiting = sum(run.state == "queued" and not run.status.get("pid") for run in runs)
    if waiting:
        try:
            ensure_dispatcher(root)
        except OSError as exc:
            st.error(f"Cannot start the queue's dispatcher: {exc}")
    try:
        from_env = env_max_runs()
    except QueueError as exc:
        st.warning(f"{exc}; using the setting below.")
        from_env = None
    if from_env:
        st.caption(f"Runs at once: {from_env} (set by FER_MAX_RUNS)")
    else:
        st.number_input(
            "Runs at once", min_value=1, max_value=MAX_RUNS_LIMIT, value=max_runs(root), step=1,
            key="queue.max_runs", on_change=save_max_runs, disabled=not actions_allowed(),
            help="Launches beyond this wait in a queue and start, in launch order, when a run ends. "
                 "Default: one per GPU, one on a machine without a GPU.")
    if error := st.session_state.pop("queue.error", None):
        st.error(error)
    if waiting:
        st.caption(f"{waiting} run{'' if waiting == 1 else 's'} waiting in the queue")


with st.sidebar:
    runs = list_runs()
    active = sum(run.state == "running" for run in runs)
    st.caption(f"Experiments folder  \n`{experiments_dir()}`")
    st.caption(f"{len(runs)} run{'' if len(runs) == 1 else 's'}, {active} training")
    queue_settings(runs)
    sidebar_status()

page.run()
