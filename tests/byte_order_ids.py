"""Token ids for oracle tests whose little-endian byte order differs from their numeric
order (suffix arrays compare bytes, `memcmp`, while queries compare ids), per token
width, with 0 and the largest id (the separator minus one)."""

BYTE_ORDER_IDS = {
    1: [0, 1, 0x7F, 0x80, 0xFE],
    # LE bytes: 0x0100 = 00 01 < 0xFF00 = 00 FF < 0x01FE = FE 01 < 0x00FF = FF 00.
    2: [0, 1, 0x00FF, 0x0100, 0x01FE, 0xFF00, 0xFFFE],
    4: [0, 1, 0xFF, 0x100, 0x1FE, 0xFF00, 0xFF0000, 0x01000000, 0xFF000000, 0xFFFFFFFE],
}
