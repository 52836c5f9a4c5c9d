"""Developer scripts: the doc generator (`make docs`) and the upload demo a new user runs."""
