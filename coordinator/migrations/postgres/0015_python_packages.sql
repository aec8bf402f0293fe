-- A wheel Muster built from a Python package of the cluster's file (`[python] packages`): 1; it is
-- installed by its path, with or without a wheelhouse, and written back as its directory.
ALTER TABLE cluster_python_wheels ADD COLUMN package BIGINT NOT NULL DEFAULT 0;
