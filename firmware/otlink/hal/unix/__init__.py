# The Unix port's emulation harness (board.py, norflash.py, uart.py, sim_i2c.py): never on a
# board (firmware/manifest.py leaves this folder out). Empty, so importing one of its modules
# costs only that module.
