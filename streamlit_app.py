"""fer-lab: the Streamlit entry point (``streamlit run streamlit_app.py``).

Pages only collect settings and read run folders; training runs in background processes.
The page scripts live in app_pages/, not pages/: with a pages/ folder next to this file Streamlit
serves a deep link such as /runs on a fresh server through its legacy file-based navigation,
without running this script (no sidebar, no page config).
"""

import streamlit as st

from fer.run_folder import ACTIVE_STATES
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
    st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/grid_on:", url_path="evaluate"),
    st.Page("app_pages/predict.py", title="Predict", icon=":material/face:", url_path="predict"),
])

with st.sidebar:
    runs = list_runs()
    active = sum(run.state in ACTIVE_STATES for run in runs)
    st.caption(f"Experiments folder  \n`{experiments_dir()}`")
    st.caption(f"{len(runs)} run{'' if len(runs) == 1 else 's'}, {active} training")

page.run()
