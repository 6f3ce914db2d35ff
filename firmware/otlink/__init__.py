# otlink edge agent. Version is reported in the birth message.
VERSION = "0.1.0"
