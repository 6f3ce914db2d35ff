# The 32-bit Unix build's variant (tools/build_mp32.sh passes FROZEN_MANIFEST and the 32-bit
# switches on its make line).
FROZEN_MANIFEST ?= $(VARIANT_DIR)/manifest.py
