"""The status page's files (``index.html``, ``app.js``, ``app.css``), served by ``agent.ops.status_api``.

Plain HTML, a small script that draws its charts as SVG, and system fonts: nothing is fetched from
anywhere but the agent, so the page works on a plant network without internet.
"""
