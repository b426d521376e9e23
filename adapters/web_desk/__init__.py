"""The web desk: an office's clerks, reviewers, liaison desks and administrators at work in a
browser, in their own language.

A Starlette application of server-rendered pages (Jinja2 templates, one stylesheet and a few
lines of plain JavaScript shipped in the package) that reaches the node only through its
DeskService, with the signed-in operator's session token on every call. `certfed web serve`
(cli/web_commands.py) runs it under uvicorn; docs/web-desk.md says how to deploy it.
"""
