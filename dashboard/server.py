"""The dashboard's server: ``streamlit run dashboard/server.py`` serves ``dashboard/app.py`` as an
``st.App`` (Streamlit's ASGI server, the same options as ``streamlit run dashboard/app.py``) with
:class:`regsearch.dashboard.address.ServerAddress`, so that a page opened at its own address asks
no path under it (no 404s). ``regsearch.dashboard.run`` starts it.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from regsearch.dashboard.address import ServerAddress

app = st.App(str(Path(__file__).with_name("app.py")), middleware=[Middleware(ServerAddress)])
