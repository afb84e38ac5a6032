"""Learning-system connectors (Moodle, xAPI LRS pull, CSV drop) behind one interface."""
