"""Privacy attacks (membership inference and black-box attacks), registered in
:data:`privaudit.registry.attacks`."""

__all__: list[str] = []
