"""Modbus TCP and RTU field driver (entry points `modbus-tcp`, `modbus-rtu`).

Modules: `config` (the YAML models), `codec` (registers <-> values), `plan` (coalescing reads),
`link` (the only module that imports pymodbus), `driver` (`ModbusDriver`, the agent contract),
`scan` (`batigate scan modbus`, declared in the driver's capabilities).
"""
