# The frozen 32-bit Unix build the firmware tests run on (tools/build_mp32.sh): asyncio as
# every board port freezes it, and the agent with the Unix emulation harness.
include("$(MPY_DIR)/extmod/asyncio")
include("../../firmware/manifest.py", unix_harness=True)
