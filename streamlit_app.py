"""fer-lab: the Streamlit entry point (``streamlit run streamlit_app.py``).

Pages only collect settings and read run folders; training runs in background processes.
"""

import streamlit as st

from fer.runs import ACTIVE_STATES, experiments_dir, list_runs

st.set_page_config(page_title="fer-lab", page_icon=":material/mood:", layout="wide")

page = st.navigation([
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train",
            default=True),
    st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:", url_path="runs"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/grid_on:", url_path="evaluate"),
    st.Page("pages/predict.py", title="Predict", icon=":material/face:", url_path="predict"),
])

with st.sidebar:
    runs = list_runs()
    active = sum(run.state in ACTIVE_STATES for run in runs)
    st.caption(f"Experiments folder  \n`{experiments_dir()}`")
    st.caption(f"{len(runs)} run{'' if len(runs) == 1 else 's'}, {active} training")

page.run()
