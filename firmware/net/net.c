/*
 * net: virtio-net driver test over virtio-mmio (version 2), at CPL3.
 *
 * ARP for the peer (net.peer=), then ICMP echo requests to it; answers ARP
 * requests for its own address (net.ip=) meanwhile.  Prints net: PASS/FAIL
 * lines and powers off.  `net.bench=tx` instead sends UDP frames to the
 * peer as fast as it can; `net.bench=rx` counts frames received.
 */
#include "irq.h"
#include "virtio.h"

const int fw_run_in_user_mode = 1;

#define VIRTIO_NET_F_MAC	5
#define VIRTIO_NET_F_STATUS	16
#define NET_HDR_LEN		12	/* struct virtio_net_hdr with num_buffers (VERSION_1) */

#define RXQ 0
#define TXQ 1
#define BUF_SIZE 2048
#define MEM_RXQ		(SCRATCH_BASE + 0x0000)
#define MEM_TXQ		(SCRATCH_BASE + 0x4000)
#define MEM_RXBUF	(SCRATCH_BASE + 0x10000)	/* 256 x 2 KiB */
#define MEM_TXBUF	(SCRATCH_BASE + 0x90000)	/* 256 x 2 KiB */

static struct vdev *dev;
static struct vq rxq, txq;
static uint8_t my_mac[6], peer_mac[6];
static uint8_t my_ip[4], peer_ip[4];
static int have_peer_mac;
static int checks, failures;
static uint16_t tx_next;		/* next tx slot */
static uint16_t tx_inflight;
static uint8_t tx_busy[256];		/* per tx descriptor: posted, not yet used */
static uint64_t rx_frames, rx_bytes;

static uint16_t htons(uint16_t v) { return (uint16_t)(v << 8 | v >> 8); }

static int parse_ip(const char *key, const char *dflt, uint8_t ip[4])
{
	size_t len;
	const char *v = cmdline_get(key, &len);
	if (!v) {
		v = dflt;
		len = strlen(dflt);
	}
	size_t i = 0;
	for (int k = 0; k < 4; k++) {
		uint64_t x = 0;
		int digits = 0;
		while (i < len && v[i] >= '0' && v[i] <= '9')
			x = x * 10 + (uint64_t)(v[i++] - '0'), digits++;
		if (!digits || x > 255)
			return -1;
		ip[k] = (uint8_t)x;
		if (k < 3 && (i >= len || v[i++] != '.'))
			return -1;
	}
	return i == len ? 0 : -1;
}

static int parse_mac(const char *v, size_t len, uint8_t mac[6])
{
	if (len != 17)
		return -1;
	for (int k = 0; k < 6; k++) {
		uint64_t x;
		if (parse_u64((const char[]){ '0', 'x', v[3 * k], v[3 * k + 1] }, 4, &x) != 4)
			return -1;
		mac[k] = (uint8_t)x;
		if (k < 5 && v[3 * k + 2] != ':')
			return -1;
	}
	return 0;
}

static uint16_t csum(const void *data, size_t n, uint32_t sum)
{
	const uint8_t *p = data;
	for (; n > 1; n -= 2, p += 2)
		sum += (uint32_t)(p[0] << 8 | p[1]);
	if (n)
		sum += (uint32_t)(p[0] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static void rx_post(uint16_t i)
{
	rxq.desc[i].addr = MEM_RXBUF + (uint64_t)i * BUF_SIZE;
	rxq.desc[i].len = BUF_SIZE;
	rxq.desc[i].flags = VIRTQ_DESC_F_WRITE;
	rxq.desc[i].next = 0;
	vq_push(&rxq, i);
}

static void tx_reclaim(void)
{
	uint32_t id, len;
	while (vq_poll(&txq, &id, &len)) {
		/* Completions may come back in any order: free exactly that descriptor. */
		if (id < txq.num && tx_busy[id]) {
			tx_busy[id] = 0;
			tx_inflight--;
		}
	}
}

/* Frame buffer for the next tx slot (after the virtio-net header). */
static uint8_t *tx_frame(void)
{
	while (tx_busy[tx_next]) {
		tx_reclaim();
		cpu_relax();
	}
	return (uint8_t *)(MEM_TXBUF + (uint64_t)tx_next * BUF_SIZE + NET_HDR_LEN);
}

static void tx_send(size_t len, int kick)
{
	uint8_t *buf = (uint8_t *)(MEM_TXBUF + (uint64_t)tx_next * BUF_SIZE);
	memset(buf, 0, NET_HDR_LEN);
	if (len < 60) {
		memset(buf + NET_HDR_LEN + len, 0, 60 - len);
		len = 60;
	}
	txq.desc[tx_next].addr = (uint64_t)buf;
	txq.desc[tx_next].len = (uint32_t)(NET_HDR_LEN + len);
	txq.desc[tx_next].flags = 0;
	txq.desc[tx_next].next = 0;
	vq_push(&txq, tx_next);
	tx_busy[tx_next] = 1;
	tx_inflight++;
	tx_next = (uint16_t)((tx_next + 1) % txq.num);
	if (kick)
		vq_kick(&txq);
}

static void eth_header(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, my_mac, 6);
	f[12] = (uint8_t)(type >> 8);
	f[13] = (uint8_t)type;
}

static void send_arp(uint16_t op, const uint8_t *dst_mac, const uint8_t *target_mac, const uint8_t *target_ip)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t *f = tx_frame();
	eth_header(f, dst_mac ? dst_mac : bcast, 0x0806);
	uint8_t *a = f + 14;
	a[0] = 0; a[1] = 1;		/* Ethernet */
	a[2] = 0x08; a[3] = 0x00;	/* IPv4 */
	a[4] = 6; a[5] = 4;
	a[6] = 0; a[7] = (uint8_t)op;
	memcpy(a + 8, my_mac, 6);
	memcpy(a + 14, my_ip, 4);
	if (target_mac)
		memcpy(a + 18, target_mac, 6);
	else
		memset(a + 18, 0, 6);
	memcpy(a + 24, target_ip, 4);
	tx_send(14 + 28, 1);
}

static void ip_header(uint8_t *ip, uint8_t proto, size_t payload, const uint8_t *dst)
{
	static uint16_t ident = 1;
	size_t total = 20 + payload;
	ip[0] = 0x45;
	ip[1] = 0;
	ip[2] = (uint8_t)(total >> 8);
	ip[3] = (uint8_t)total;
	ip[4] = (uint8_t)(ident >> 8);
	ip[5] = (uint8_t)ident;
	ident++;
	ip[6] = 0x40;			/* don't fragment */
	ip[7] = 0;
	ip[8] = 64;
	ip[9] = proto;
	ip[10] = ip[11] = 0;
	memcpy(ip + 12, my_ip, 4);
	memcpy(ip + 16, dst, 4);
	uint16_t c = csum(ip, 20, 0);
	memcpy(ip + 10, &c, 2);
}

#define PING_ID 0x5346		/* "SF" */
#define PING_PAYLOAD 56

static void send_ping(uint16_t seq, uint64_t stamp)
{
	uint8_t *f = tx_frame();
	eth_header(f, peer_mac, 0x0800);
	ip_header(f + 14, 1, 8 + PING_PAYLOAD, peer_ip);
	uint8_t *icmp = f + 34;
	icmp[0] = 8;
	icmp[1] = 0;
	icmp[2] = icmp[3] = 0;
	icmp[4] = PING_ID >> 8;
	icmp[5] = PING_ID & 0xff;
	icmp[6] = (uint8_t)(seq >> 8);
	icmp[7] = (uint8_t)seq;
	memcpy(icmp + 8, &stamp, 8);
	for (int i = 8; i < PING_PAYLOAD; i++)
		icmp[8 + i] = (uint8_t)i;
	uint16_t c = csum(icmp, 8 + PING_PAYLOAD, 0);
	memcpy(icmp + 2, &c, 2);
	tx_send(34 + 8 + PING_PAYLOAD, 1);
}

/* What the receive path saw. */
static int got_arp_reply, got_echo_reply;
static uint16_t echo_seq;
static uint64_t echo_stamp;

static void handle_frame(const uint8_t *f, size_t len)
{
	rx_frames++;
	rx_bytes += len;
	if (len < 14)
		return;
	uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
	if (type == 0x0806 && len >= 42) {
		const uint8_t *a = f + 14;
		uint16_t op = (uint16_t)(a[6] << 8 | a[7]);
		if (op == 1 && memcmp(a + 24, my_ip, 4) == 0) {
			/* Someone asks for us: answer. */
			send_arp(2, a + 8, a + 8, a + 14);
		} else if (op == 2 && memcmp(a + 14, peer_ip, 4) == 0) {
			memcpy(peer_mac, a + 8, 6);
			have_peer_mac = 1;
			got_arp_reply = 1;
		}
		return;
	}
	if (type == 0x0800 && len >= 34 + 8) {
		const uint8_t *ip = f + 14;
		size_t ihl = (size_t)(ip[0] & 0xf) * 4;
		if ((ip[0] >> 4) != 4 || ihl < 20 || len < 14 + ihl + 8)
			return;
		if (ip[9] != 1 || memcmp(ip + 16, my_ip, 4) != 0)
			return;
		const uint8_t *icmp = ip + ihl;
		if (icmp[0] == 0 && icmp[4] == (PING_ID >> 8) && icmp[5] == (PING_ID & 0xff)) {
			echo_seq = (uint16_t)(icmp[6] << 8 | icmp[7]);
			memcpy(&echo_stamp, icmp + 8, 8);
			got_echo_reply = 1;
		}
	}
}

static void poll_rx(void)
{
	uint32_t id, len;
	int reposted = 0;
	while (vq_poll(&rxq, &id, &len)) {
		if (id < rxq.num && len >= NET_HDR_LEN && len <= BUF_SIZE)
			handle_frame((const uint8_t *)(MEM_RXBUF + (uint64_t)id * BUF_SIZE + NET_HDR_LEN),
				     len - NET_HDR_LEN);
		if (id < rxq.num) {
			rx_post((uint16_t)id);
			reposted = 1;
		}
	}
	if (reposted)
		vq_kick(&rxq);
	tx_reclaim();
}

static int wait_for(int *flag, uint64_t ms)
{
	uint64_t t0 = rdtsc(), limit = ms_to_tsc(ms);
	while (!*flag) {
		poll_rx();
		if (rdtsc() - t0 > limit)
			return 0;
		cpu_relax();
	}
	return 1;
}

static void mac_str(char *s, const uint8_t *m)
{
	snprintf(s, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

static void net_test(void)
{
	char ms[18];
	int tries = (int)cmdline_u64("net.tries", 10);
	for (int t = 0; t < tries && !got_arp_reply; t++) {
		send_arp(1, NULL, NULL, peer_ip);
		wait_for(&got_arp_reply, 500);
	}
	checks++;
	if (!got_arp_reply) {
		printf("net: FAIL no ARP reply from %u.%u.%u.%u\n", peer_ip[0], peer_ip[1], peer_ip[2], peer_ip[3]);
		failures++;
		return;
	}
	mac_str(ms, peer_mac);
	printf("net: PASS arp %u.%u.%u.%u is at %s\n", peer_ip[0], peer_ip[1], peer_ip[2], peer_ip[3], ms);

	int count = (int)cmdline_u64("net.count", 3);
	for (int seq = 1; seq <= count; seq++) {
		int ok = 0;
		for (int t = 0; t < tries && !ok; t++) {
			got_echo_reply = 0;
			uint64_t t0 = rdtsc();
			send_ping((uint16_t)seq, t0);
			uint64_t tw = rdtsc(), limit = ms_to_tsc(500);
			while (rdtsc() - tw < limit) {
				if (wait_for(&got_echo_reply, 500) && echo_seq == seq && echo_stamp == t0) {
					ok = 1;
					break;
				}
				got_echo_reply = 0;
			}
			if (ok) {
				uint64_t us = (rdtsc() - t0) * 1000 / (tsc_khz() ? tsc_khz() : 2500000);
				printf("net: PASS icmp echo reply from %u.%u.%u.%u seq %d time %lu us\n",
				       peer_ip[0], peer_ip[1], peer_ip[2], peer_ip[3], seq, us);
			}
		}
		checks++;
		if (!ok) {
			printf("net: FAIL no icmp echo reply for seq %d\n", seq);
			failures++;
		}
	}
}

/*
 * Interrupt delivery: route the device's IRQ to vector 0x40, request
 * interrupts on the receive queue, ping once more and expect the vector
 * and InterruptStatus bit 0.
 */
static void net_interrupt(void)
{
	if (!have_peer_mac || cmdline_has("net.noirq"))
		return;
	const uint8_t vector = 0x40;
	const char *why = "";
	if (irq_route(dev->irq, vector, &why)) {
		printf("net: SKIP interrupt (irq %u: %s)\n", dev->irq, why);
		return;
	}
	vwrite(dev, VMMIO_INTERRUPT_ACK, vread(dev, VMMIO_INTERRUPT_STATUS));
	uint64_t before = fw_irq_count[vector];
	rxq.avail->flags = 0;
	if (rxq.event_idx)
		*(volatile uint16_t *)&rxq.avail->ring[rxq.num] = rxq.last_used;
	mb();
	irq_enable();
	got_echo_reply = 0;
	uint64_t stamp = rdtsc();
	send_ping(0x7fff, stamp);
	uint64_t t0 = rdtsc(), limit = ms_to_tsc(2000);
	while (fw_irq_count[vector] == before && rdtsc() - t0 < limit)
		cpu_relax();
	irq_disable();
	uint32_t isr = vread(dev, VMMIO_INTERRUPT_STATUS);
	vwrite(dev, VMMIO_INTERRUPT_ACK, isr);
	rxq.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	irq_mask(dev->irq);
	wait_for(&got_echo_reply, 500);
	uint64_t got = fw_irq_count[vector] - before;
	checks++;
	if (got >= 1 && (isr & 1)) {
		printf("net: PASS interrupt: irq %u -> vector 0x%x delivered, InterruptStatus bit 0 set\n", dev->irq, vector);
	} else {
		printf("net: FAIL interrupt: irq %u vector 0x%x: %lu interrupt(s), InterruptStatus 0x%x\n",
		       dev->irq, vector, got, isr);
		failures++;
	}
}

/* tx: UDP frames of net.size bytes to the peer (port 9, discard) for net.secs. */
static void net_bench(const char *mode, size_t mlen)
{
	uint64_t secs = cmdline_u64("net.secs", 5), khz = tsc_khz();
	uint64_t size = cmdline_u64("net.size", 1514);
	if (!khz) {
		printf("net: FAIL bench needs the TSC frequency (tsc_khz=)\n");
		failures++;
		return;
	}
	if (size < 60)
		size = 60;
	if (size > 1514)
		size = 1514;
	int tx = mlen == 2 && memcmp(mode, "tx", 2) == 0;
	int rx = mlen == 2 && memcmp(mode, "rx", 2) == 0;
	if (!tx && !rx) {
		printf("net: FAIL unknown net.bench mode\n");
		failures++;
		return;
	}
	printf("net: bench %s size=%lu secs=%lu tsc_khz=%lu\n", tx ? "tx" : "rx", size, secs, khz);
	uint64_t frames = 0, t0 = rdtsc(), end = t0 + secs * 1000 * khz;
	rx_frames = rx_bytes = 0;
	if (tx) {
		size_t payload = size - 14 - 20 - 8;
		uint64_t batch = 0;
		while (rdtsc() < end) {
			if (tx_inflight >= txq.num)
				tx_reclaim();
			if (tx_inflight >= txq.num) {
				cpu_relax();
				continue;
			}
			uint8_t *f = tx_frame();
			eth_header(f, peer_mac, 0x0800);
			ip_header(f + 14, 17, 8 + payload, peer_ip);
			uint8_t *u = f + 34;
			u[0] = 0x13; u[1] = 0x89;	/* source port 5001 */
			u[2] = 0; u[3] = 9;		/* discard */
			u[4] = (uint8_t)((8 + payload) >> 8);
			u[5] = (uint8_t)(8 + payload);
			u[6] = u[7] = 0;		/* no UDP checksum */
			memcpy(u + 8, &frames, 8);
			tx_send(size, 0);
			frames++;
			if (++batch >= 32 || tx_inflight >= txq.num) {
				vq_kick(&txq);
				batch = 0;
			}
			poll_rx();
		}
		vq_kick(&txq);
	} else {
		while (rdtsc() < end)
			poll_rx();
		frames = rx_frames;
	}
	uint64_t us = (rdtsc() - t0) * 1000 / khz;
	uint64_t bytes = tx ? frames * size : rx_bytes;
	uint64_t mibs_x100 = us ? bytes * 100 / us * 1000000 / (1 << 20) : 0;
	printf("net: bench result mode=%s frames=%lu bytes=%lu usecs=%lu pps=%lu MiB/s=%lu.%02lu\n",
	       tx ? "tx" : "rx", frames, bytes, us, us ? frames * 1000000 / us : 0, mibs_x100 / 100, mibs_x100 % 100);
}

int main(void)
{
	static struct vdev devs[VIRTIO_MAX_DEVICES];
	int verbose = cmdline_has("net.verbose") || cmdline_has("fw.debug");
	int n = virtio_find(devs, VIRTIO_MAX_DEVICES, verbose);
	for (int i = 0; i < n && !dev; i++)
		if (devs[i].device_id == VIRTIO_ID_NET)
			dev = &devs[i];
	if (!dev) {
		printf("net: FAIL no virtio-net device (give virtio_mmio.device=<size>@<base>:<irq>)\n");
		goto out;
	}
	if (parse_ip("net.ip", "10.0.2.15", my_ip) || parse_ip("net.peer", "10.0.2.1", peer_ip)) {
		printf("net: FAIL bad net.ip= or net.peer=\n");
		failures++;
		goto out;
	}
	int r = virtio_negotiate(dev, (1ull << VIRTIO_NET_F_MAC) | virtio_common_features());
	if (r || vq_setup(dev, &rxq, RXQ, 256, MEM_RXQ) || vq_setup(dev, &txq, TXQ, 256, MEM_TXQ)) {
		printf("net: FAIL device 0x%lx set-up (negotiation step %d)\n", dev->base, r);
		failures++;
		goto out;
	}
	for (uint16_t i = 0; i < rxq.num; i++)
		rx_post(i);
	virtio_driver_ok(dev);
	vq_kick(&rxq);
	size_t ml;
	const char *mac = cmdline_get("net.mac", &ml);
	if (mac && parse_mac(mac, ml, my_mac) == 0) {
	} else if (dev->features & (1ull << VIRTIO_NET_F_MAC)) {
		for (int i = 0; i < 6; i++)
			my_mac[i] = mmio_read8(dev->base + VMMIO_CONFIG + (uint32_t)i);
	} else {
		static const uint8_t dflt[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
		memcpy(my_mac, dflt, 6);
	}
	char ms[18];
	mac_str(ms, my_mac);
	printf("net: device at 0x%lx irq %u mac %s ip %u.%u.%u.%u peer %u.%u.%u.%u features 0x%lx\n",
	       dev->base, dev->irq, ms, my_ip[0], my_ip[1], my_ip[2], my_ip[3],
	       peer_ip[0], peer_ip[1], peer_ip[2], peer_ip[3], dev->features);
	size_t blen;
	const char *bench = cmdline_get("net.bench", &blen);
	if (bench) {
		/* Resolve the peer first; fall back to broadcast. */
		for (int t = 0; t < 4 && !got_arp_reply; t++) {
			send_arp(1, NULL, NULL, peer_ip);
			wait_for(&got_arp_reply, 250);
		}
		if (!have_peer_mac)
			memset(peer_mac, 0xff, 6);
		net_bench(bench, blen);
	} else {
		net_test();
		net_interrupt();
		if (failures)
			printf("net: FAIL %d of %d checks failed\n", failures, checks);
		else
			printf("net: PASS all %d checks\n", checks);
	}
	virtio_reset(dev);
out:
	if (!dev)
		failures++;
	printf("net: done\n");
	return 0;
}
