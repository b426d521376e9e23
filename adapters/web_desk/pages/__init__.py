"""The desk's pages, one module per kind of work: signing in and the home page, the paying
office, the residence agency, the reviewer, the liaison desk and the administrator."""
