"""The embedded profile's generated world: scenes of coloured shapes (``scenes``), the task
language derived from them (``language``) and the writer of every data set in its real
on-disk format (``datasets``). The paper profile never imports it."""
