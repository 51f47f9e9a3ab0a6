/* A Modbus slave built on libmodbus (an implementation we did not write), for the interop tests.
 *
 *   slave tcp PORT UNITS            serve the units in UNITS (e.g. "1,2,3") on 127.0.0.1:PORT
 *                                   (0 = a free port); other unit ids get no answer at all
 *   slave rtu DEVICE BAUD PARITY STOPBITS UNIT
 *
 * Prints "ready PORT" (tcp) or "ready" (rtu) on stdout once it listens. With SLAVE_LOG=FILE,
 * appends one line per request: "UNIT FC ADDRESS COUNT"; SLAVE_DEBUG=1 turns on libmodbus'
 * own trace (RTU). Ends by itself after 15 minutes, should a test leave it behind.
 *
 * Register map, the same for every unit U:
 *   holding 0..39: U*100 + i, except
 *     7 and 20..29    refused: a request touching one gets exception 02 (a hole in the map)
 *     30 = 0xFFFF     the "not available" value of many devices
 *     32..33          float32 NaN (0x7FC0 0x0000);  34..35 float32 21.5 (0x41AC 0x0000)
 *   input 0..9: 1000 + i;  coils 0..15: i odd;  discrete 0..15: i multiple of 3
 * Anything libmodbus does not implement (FC 43 device identification, ...) gets libmodbus' own
 * answer: exception 01 after its response timeout (0.5 s), with its input flushed.
 *
 * On RTU, libmodbus reads another unit's answer off the line after a request for that unit, for
 * up to its response timeout; an absent unit's silence would then swallow the next request to
 * this one. The response timeout is 0.1 s there, under the masters' timeouts in the tests.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <modbus.h>

static int served[248];
static FILE *request_log;

static int refused_holding(int address) {
    return address == 7 || (address >= 20 && address <= 29);
}

static void fill(modbus_mapping_t *map, int unit) {
    for (int i = 0; i < 40; i++)
        map->tab_registers[i] = (uint16_t)(unit * 100 + i);
    map->tab_registers[30] = 0xFFFF;
    map->tab_registers[32] = 0x7FC0;
    map->tab_registers[33] = 0x0000;
    map->tab_registers[34] = 0x41AC;
    map->tab_registers[35] = 0x0000;
    for (int i = 0; i < 10; i++)
        map->tab_input_registers[i] = (uint16_t)(1000 + i);
    for (int i = 0; i < 16; i++) {
        map->tab_bits[i] = (uint8_t)(i % 2);
        map->tab_input_bits[i] = (uint8_t)(i % 3 == 0);
    }
}

/* Answers one request; returns -1 when the connection is gone. */
static int handle(modbus_t *ctx, modbus_mapping_t *maps[], const uint8_t *req, int length) {
    int header = modbus_get_header_length(ctx);
    int unit = req[header - 1];
    int function = req[header];
    int address = (req[header + 1] << 8) | req[header + 2];
    int count = 1;
    if (function <= 4 || function == 15 || function == 16)
        count = (req[header + 3] << 8) | req[header + 4];
    if (request_log) {
        fprintf(request_log, "%d %d %d %d\n", unit, function, address, count);
        fflush(request_log);
    }
    if (unit < 1 || unit > 247 || !served[unit])
        return 0; /* absent unit: a real line stays silent */
    if (function == 3 || function == 6 || function == 16) {
        for (int a = address; a < address + count && a < 65536; a++)
            if (refused_holding(a))
                return modbus_reply_exception(ctx, req, MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS);
    }
    return modbus_reply(ctx, req, length, maps[unit]);
}

static modbus_mapping_t *new_map(int unit) {
    modbus_mapping_t *map = modbus_mapping_new(16, 16, 40, 10);
    if (map == NULL) {
        fprintf(stderr, "mapping: %s\n", modbus_strerror(errno));
        exit(1);
    }
    fill(map, unit);
    return map;
}

static void parse_units(const char *text) {
    char *copy = strdup(text), *save = NULL;
    for (char *part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
        int unit = atoi(part);
        if (unit >= 1 && unit <= 247)
            served[unit] = 1;
    }
    free(copy);
}

int main(int argc, char **argv) {
    static modbus_mapping_t *maps[248];
    uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];
    const char *log_path = getenv("SLAVE_LOG");
    signal(SIGPIPE, SIG_IGN);
    alarm(900);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (log_path)
        request_log = fopen(log_path, "a");
    if (argc == 4 && strcmp(argv[1], "tcp") == 0) {
        parse_units(argv[3]);
        for (int u = 1; u <= 247; u++)
            if (served[u])
                maps[u] = new_map(u);
        modbus_t *ctx = modbus_new_tcp("127.0.0.1", atoi(argv[2]));
        int listener = modbus_tcp_listen(ctx, 4);
        if (listener < 0) {
            fprintf(stderr, "listen: %s\n", modbus_strerror(errno));
            return 1;
        }
        struct sockaddr_in bound;
        socklen_t size = sizeof bound;
        getsockname(listener, (struct sockaddr *)&bound, &size);
        printf("ready %d\n", ntohs(bound.sin_port));
        fflush(stdout);
        for (;;) {
            if (modbus_tcp_accept(ctx, &listener) < 0)
                continue;
            for (;;) {
                int length = modbus_receive(ctx, req);
                if (length < 0)
                    break; /* the master closed the connection (or sent garbage) */
                if (length > 0 && handle(ctx, maps, req, length) < 0)
                    break;
            }
            modbus_close(ctx);
        }
    }
    if (argc == 7 && strcmp(argv[1], "rtu") == 0) {
        int unit = atoi(argv[6]);
        served[unit] = 1;
        maps[unit] = new_map(unit);
        modbus_t *ctx = modbus_new_rtu(argv[2], atoi(argv[3]), argv[4][0], 8, atoi(argv[5]));
        if (ctx == NULL || modbus_set_slave(ctx, unit) < 0 || modbus_connect(ctx) < 0) {
            fprintf(stderr, "rtu %s: %s\n", argv[2], modbus_strerror(errno));
            return 1;
        }
        modbus_set_response_timeout(ctx, 0, 100000);
        if (getenv("SLAVE_DEBUG"))
            modbus_set_debug(ctx, TRUE);
        printf("ready\n");
        fflush(stdout);
        for (;;) {
            int length = modbus_receive(ctx, req);
            if (length < 0) {
                if (errno == EBADF || errno == EIO)
                    return 1; /* the line is gone */
                modbus_flush(ctx); /* a bad frame: start afresh on the next one */
                continue;
            }
            if (length > 0)
                handle(ctx, maps, req, length);
        }
    }
    fprintf(stderr, "usage: slave tcp PORT UNITS | slave rtu DEVICE BAUD PARITY STOPBITS UNIT\n");
    return 2;
}
