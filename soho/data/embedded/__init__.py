"""The embedded profile's generated world: scenes of coloured shapes (``scenes``), the task
language derived from them (``language``) and the writers of every data set in its real
on-disk format (``captioned``, ``task_sets``, ``clips``; ``datasets.generate`` runs them all).
The paper profile never imports it."""
