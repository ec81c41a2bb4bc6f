"""edgecnn.devices (shared): where models run — device profiles, the SSH transport, the board probe.

| module        | what it holds                                                                  |
|---------------|--------------------------------------------------------------------------------|
| `profiles.py` | `devices/NAME.yaml` -> `DeviceProfile` (pydantic, strict, unknown fields rejected) |
| `ssh.py`      | `SshBoard`: verified host key, key login, timeouts, cached atomic uploads        |
| `board.py`    | `connect`, `probe`, `missing`, `check_device`: what a board has and lacks        |

Used by bench (remote runs), deploy (flash) and the pipeline; nothing here runs a model.
"""
