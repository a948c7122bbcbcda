"""`vsd ask`: one image, one pair, the answers annotation would give (`core`), typed boxes (`boxes`)."""
