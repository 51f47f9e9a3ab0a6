"""M-Bus application layer (EN 13757-3): decode an RSP_UD frame into a Telegram of records.

The variable data structure is a 12-byte header (CI 0x72) followed by data records:

    DIF [DIFE x0..10] VIF [VIFE x0..10] data

Values leave this package in SenML primary units (J, m3, W, m3/s, Cel, K, s, V, A, kg ...).

Modules, in the order a frame goes through them:
- `model`: Telegram, Record and the CI field codes;
- `values`: the bounded cursor over the frame and the data types (BCD, dates, text, scaling);
- `records`: DIF/DIFE, VIF/VIFE and the data of each record;
- `telegram`: the fixed and variable headers, a whole long frame, a hex dump;
- `output`: JSON and the `batigate mbus decode` table.

Every name the single `codec` module had is still importable from here.
"""

from drivers.mbus.codec.model import (
    APPLICATION_ERRORS,
    CI_ALARM,
    CI_APPLICATION_ERROR,
    CI_FIXED,
    CI_FIXED_MSB,
    CI_VARIABLE_LONG,
    CI_VARIABLE_LONG_MSB,
    CI_VARIABLE_NONE,
    CI_VARIABLE_SHORT,
    MAX_DIFE,
    MAX_VIFE,
    Function,
    Record,
    Telegram,
    Value,
)
from drivers.mbus.codec.output import header_to_json, main_decode, record_to_json, telegram_to_json
from drivers.mbus.codec.records import decode_records, is_error_code
from drivers.mbus.codec.telegram import (
    decode_frame,
    decode_hex,
    decode_hex_file,
    decode_user_data,
)
from drivers.mbus.frames import MBusDecodeError

__all__ = [
    "APPLICATION_ERRORS",
    "CI_ALARM",
    "CI_APPLICATION_ERROR",
    "CI_FIXED",
    "CI_FIXED_MSB",
    "CI_VARIABLE_LONG",
    "CI_VARIABLE_LONG_MSB",
    "CI_VARIABLE_NONE",
    "CI_VARIABLE_SHORT",
    "MAX_DIFE",
    "MAX_VIFE",
    "Function",
    "MBusDecodeError",
    "Record",
    "Telegram",
    "Value",
    "decode_frame",
    "decode_hex",
    "decode_hex_file",
    "decode_records",
    "decode_user_data",
    "header_to_json",
    "is_error_code",
    "main_decode",
    "record_to_json",
    "telegram_to_json",
]
