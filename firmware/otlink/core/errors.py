# Errors shared by the core. Kept tiny: args are short strings, no formatting in hot paths.


class ConfigError(ValueError):
    """A node config value is wrong. args[0] is the field path (e.g. "points[3].type"),
    args[1] what is wrong with it."""

    def __init__(self, field, problem):
        super().__init__(field, problem)
        self.field = field
        self.problem = problem

    def __str__(self):
        return "config: %s: %s" % (self.field, self.problem)
