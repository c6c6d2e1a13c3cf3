/*
 * nullresp: the ceiling of hack/bench. A minimal AoE target that answers
 * without touching any storage, one frame at a time, the way vblade does it
 * (a blocking recv(2) of one frame, a blocking send(2) of its reply), so that
 * what it reaches is the cost of the network path alone: the AF_PACKET
 * sockets, the veth pair and the load generator.
 *
 *	nullresp [-b bufcnt] [-s sectors] [-m] shelf slot netif
 *
 * It answers
 *   - Query Config (any sub-command is answered as a read): the buffer
 *     count, firmware version 1, sectors per frame (MTU - 36) / 512 capped
 *     at 255, no config string;
 *   - ATA READ SECTORS (EXT): the sectors asked for, all zero bytes;
 *   - ATA WRITE SECTORS (EXT): an acknowledgement, the data ignored;
 *   - IDENTIFY DEVICE: a page claiming LBA48 and a capacity of -s sectors
 *     (default 2^32, i.e. 2 TiB), so initiators learn a size;
 *   - FLUSH CACHE (EXT), CHECK POWER MODE: success;
 *   - any other ATA command: ABRT; any other AoE command below 0xf0: AoE
 *     error 1 (unrecognized command); vendor commands: nothing.
 * Requests that are not for shelf.slot (or a broadcast address) are ignored.
 *
 * Like vblade, it sizes its socket buffers as bufcnt frames of the MTU.
 *
 * With -m it moves up to 64 frames per system call instead (recvmmsg,
 * sendmmsg): no longer what vblade does, but a cheaper responder, to measure
 * the load generator itself rather than the ceiling.
 * Build: gcc -O2 -Wall -o nullresp nullresp.c. Needs CAP_NET_RAW.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
	ETHERTYPE_AOE = 0x88a2,
	ETH_HLEN_ = 14,
	AOE_HLEN = 10,          /* ver/flags, error, major(2), minor, cmd, tag(4) */
	HDR = ETH_HLEN_ + AOE_HLEN, /* 24: where the command argument starts */
	ATA_ALEN = 12,
	ATA_HDR = HDR + ATA_ALEN, /* 36: where the sectors start */
	CFG_ALEN = 8,
	MIN_FRAME = 60,         /* ETH_ZLEN: shorter replies are padded */
	MAXFRAME = 65536 + 64,

	FLAG_RSP = 0x08,
	FLAG_ERR = 0x04,
	VERSION = 1,

	AFLAG_WRITE = 0x01,
	STATUS_ERR = 0x01,
	STATUS_DRDY = 0x40,
	ERROR_ABRT = 0x04,

	AOE_ERR_UNRECOGNIZED = 1,
	AOE_ERR_BADARG = 2,
};

enum { BATCH = 64 };

static unsigned char rbufs[BATCH][MAXFRAME]; /* requests */
static unsigned char wbufs[BATCH][MAXFRAME]; /* replies; the sector areas stay zero */
static unsigned char ident[512];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: nullresp [-b bufcnt] [-s sectors] [-m] shelf slot netif\n");
	exit(2);
}

static unsigned shelf, slot;
static int bufcnt = 16, maxscnt;
static unsigned char mac[6];

static void put16le(unsigned char *p, int word, unsigned v)
{
	p[2 * word] = v & 0xff;
	p[2 * word + 1] = (v >> 8) & 0xff;
}

/* identify fills the IDENTIFY DEVICE page: LBA, LBA48, FLUSH CACHE (EXT). */
static void identify(unsigned long long sectors)
{
	static const char model[40] = "nullresp AoE ceiling                    ";
	unsigned long long lba28 = sectors > 0x0fffffff ? 0x0fffffff : sectors;
	int i;

	memset(ident, 0, sizeof ident);
	put16le(ident, 1, 16383);
	put16le(ident, 3, 16);
	put16le(ident, 6, 63);
	for (i = 0; i < 20; i++) /* serial, words 10-19, byte-swapped */
		ident[20 + (i ^ 1)] = "0000000000000000null"[i];
	for (i = 0; i < 8; i++) /* firmware, words 23-26 */
		ident[46 + (i ^ 1)] = "1       "[i];
	for (i = 0; i < 40; i++) /* model, words 27-46 */
		ident[54 + (i ^ 1)] = model[i];
	put16le(ident, 47, 0x8000);
	put16le(ident, 49, 0x0200);
	put16le(ident, 50, 0x4000);
	put16le(ident, 60, lba28 & 0xffff);
	put16le(ident, 61, lba28 >> 16);
	put16le(ident, 80, 0x007e);
	put16le(ident, 82, 0x4000);
	put16le(ident, 83, 0x7400);
	put16le(ident, 84, 0x4000);
	put16le(ident, 85, 0x4000);
	put16le(ident, 86, 0x3400);
	put16le(ident, 87, 0x4000);
	put16le(ident, 100, sectors & 0xffff);
	put16le(ident, 101, (sectors >> 16) & 0xffff);
	put16le(ident, 102, (sectors >> 32) & 0xffff);
	put16le(ident, 103, (sectors >> 48) & 0xffff);
}

static void setbuf_(int s, int force, int plain, int n)
{
	if (setsockopt(s, SOL_SOCKET, force, &n, sizeof n) < 0 &&
	    setsockopt(s, SOL_SOCKET, plain, &n, sizeof n) < 0)
		die("setsockopt buffer");
}

/*
 * answer builds the reply to the request rbuf of n bytes in wbuf and returns
 * its length, or 0 when the request gets no reply.
 */
static size_t answer(const unsigned char *rbuf, ssize_t n, unsigned char *wbuf)
{
	size_t len;
	unsigned major, minor, cmd;

	if (n < HDR || rbuf[12] != 0x88 || rbuf[13] != 0xa2)
		return 0;
	if (rbuf[14] & FLAG_RSP)
		return 0;
	major = rbuf[16] << 8 | rbuf[17];
	minor = rbuf[18];
	cmd = rbuf[19];
	if ((major != shelf && major != 0xffff) || (minor != slot && minor != 0xff))
		return 0;

	/* Reply header: addresses swapped, R set, our own address. */
	memcpy(wbuf, rbuf + 6, 6);
	memcpy(wbuf + 6, mac, 6);
	wbuf[12] = 0x88;
	wbuf[13] = 0xa2;
	wbuf[14] = VERSION << 4 | FLAG_RSP;
	wbuf[15] = 0;
	wbuf[16] = shelf >> 8;
	wbuf[17] = shelf & 0xff;
	wbuf[18] = slot;
	wbuf[19] = cmd;
	memcpy(wbuf + 20, rbuf + 20, 4); /* tag */
	len = HDR;

	if ((rbuf[14] >> 4) != VERSION) {
		wbuf[14] |= FLAG_ERR;
		wbuf[15] = 5; /* unsupported version */
	} else if (cmd == 0) {
		unsigned char aflags, scnt, acmd;
		size_t data = 0;

		if (n < ATA_HDR) {
			wbuf[14] |= FLAG_ERR;
			wbuf[15] = AOE_ERR_BADARG;
			goto pad;
		}
		aflags = rbuf[HDR];
		scnt = rbuf[HDR + 2];
		acmd = rbuf[HDR + 3];
		memcpy(wbuf + HDR, rbuf + HDR, ATA_ALEN);
		wbuf[HDR + 1] = 0;           /* error */
		wbuf[HDR + 3] = STATUS_DRDY; /* status */
		switch (acmd) {
		case 0x20: case 0x24: /* READ SECTORS (EXT) */
		case 0x30: case 0x34: /* WRITE SECTORS (EXT) */
			if (scnt > maxscnt ||
			    ((aflags & AFLAG_WRITE) && (size_t)n < ATA_HDR + scnt * 512u)) {
				wbuf[14] |= FLAG_ERR;
				wbuf[15] = AOE_ERR_BADARG;
				goto pad;
			}
			if (!(aflags & AFLAG_WRITE))
				data = scnt * 512u; /* zeros: the sector area is never left dirty */
			break;
		case 0xec: /* IDENTIFY DEVICE; the caller zeroes the page after sending */
			memcpy(wbuf + ATA_HDR, ident, sizeof ident);
			data = sizeof ident;
			break;
		case 0xe7: case 0xea: case 0xe5: /* FLUSH CACHE (EXT), CHECK POWER MODE */
			if (acmd == 0xe5)
				wbuf[HDR + 2] = 0xff; /* active */
			break;
		default:
			wbuf[HDR + 1] = ERROR_ABRT;
			wbuf[HDR + 3] = STATUS_DRDY | STATUS_ERR;
		}
		len = ATA_HDR + data;
	} else if (cmd == 1) {
		unsigned char *c = wbuf + HDR;
		c[0] = bufcnt >> 8;
		c[1] = bufcnt & 0xff;
		c[2] = 0;
		c[3] = 1; /* firmware version */
		c[4] = maxscnt;
		c[5] = VERSION << 4; /* read */
		c[6] = 0;
		c[7] = 0; /* no config string */
		len = HDR + CFG_ALEN;
	} else if (cmd >= 0xf0) {
		return 0;
	} else {
		wbuf[14] |= FLAG_ERR;
		wbuf[15] = AOE_ERR_UNRECOGNIZED;
	}
pad:
	if (len < MIN_FRAME) {
		memset(wbuf + len, 0, MIN_FRAME - len);
		len = MIN_FRAME;
	}
	return len;
}

/* after_send zeroes what an IDENTIFY reply left in the sector area. */
static void after_send(const unsigned char *rbuf, ssize_t n, unsigned char *wbuf)
{
	if (n >= ATA_HDR && rbuf[19] == 0 && rbuf[HDR + 3] == 0xec)
		memset(wbuf + ATA_HDR, 0, sizeof ident);
}

static int transient(int e)
{
	return e == EINTR || e == ENETDOWN || e == ENOBUFS || e == EAGAIN;
}

/* serve1 is vblade's loop: one recv, one send. */
static void serve1(int s)
{
	for (;;) {
		ssize_t n = recv(s, rbufs[0], MAXFRAME, 0);
		size_t len;

		if (n < 0) {
			if (transient(errno))
				continue;
			die("recv");
		}
		len = answer(rbufs[0], n, wbufs[0]);
		if (len == 0)
			continue;
		if (send(s, wbufs[0], len, 0) < 0 && !transient(errno))
			die("send");
		after_send(rbufs[0], n, wbufs[0]);
	}
}

/* servem moves up to BATCH frames per system call each way. */
static void servem(int s)
{
	static struct mmsghdr rv[BATCH], wv[BATCH];
	static struct iovec riov[BATCH], wiov[BATCH];
	static int src[BATCH]; /* the request of each reply */
	int i;

	for (i = 0; i < BATCH; i++) {
		riov[i].iov_base = rbufs[i];
		riov[i].iov_len = MAXFRAME;
		rv[i].msg_hdr.msg_iov = &riov[i];
		rv[i].msg_hdr.msg_iovlen = 1;
		wv[i].msg_hdr.msg_iov = &wiov[i];
		wv[i].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		int n = recvmmsg(s, rv, BATCH, MSG_WAITFORONE, NULL), m = 0, sent = 0;

		if (n < 0) {
			if (transient(errno))
				continue;
			die("recvmmsg");
		}
		for (i = 0; i < n; i++) {
			size_t len = answer(rbufs[i], rv[i].msg_len, wbufs[m]);
			if (len == 0)
				continue;
			wiov[m].iov_base = wbufs[m];
			wiov[m].iov_len = len;
			src[m] = i;
			m++;
		}
		while (sent < m) {
			int r = sendmmsg(s, wv + sent, m - sent, 0);
			if (r < 0) {
				if (!transient(errno))
					die("sendmmsg");
				sent++; /* dropped; the initiator resends it */
				continue;
			}
			sent += r;
		}
		for (i = 0; i < m; i++)
			after_send(rbufs[src[i]], rv[src[i]].msg_len, wbufs[i]);
	}
}

int main(int argc, char **argv)
{
	int opt, s, mtu, batch = 0;
	unsigned long long sectors = 1ULL << 32;
	struct ifreq ifr;
	struct sockaddr_ll sll;

	while ((opt = getopt(argc, argv, "b:s:m")) != -1) {
		switch (opt) {
		case 'b':
			bufcnt = atoi(optarg);
			if (bufcnt < 2 || bufcnt > 65535)
				usage();
			break;
		case 's':
			sectors = strtoull(optarg, NULL, 10);
			break;
		case 'm':
			batch = 1;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 3)
		usage();
	shelf = strtoul(argv[optind], NULL, 10);
	slot = strtoul(argv[optind + 1], NULL, 10);
	if (shelf >= 0xffff || slot >= 0xff)
		usage();

	s = socket(AF_PACKET, SOCK_RAW, htons(ETHERTYPE_AOE));
	if (s < 0)
		die("socket");
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", argv[optind + 2]);
	if (ioctl(s, SIOCGIFINDEX, &ifr) < 0)
		die("SIOCGIFINDEX");
	memset(&sll, 0, sizeof sll);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETHERTYPE_AOE);
	sll.sll_ifindex = ifr.ifr_ifindex;
	if (ioctl(s, SIOCGIFMTU, &ifr) < 0)
		die("SIOCGIFMTU");
	mtu = ifr.ifr_mtu;
	if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
		die("SIOCGIFHWADDR");
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	if (bind(s, (struct sockaddr *)&sll, sizeof sll) < 0)
		die("bind");
	setbuf_(s, SO_RCVBUFFORCE, SO_RCVBUF, bufcnt * mtu);
	setbuf_(s, SO_SNDBUFFORCE, SO_SNDBUF, bufcnt * mtu);

	maxscnt = (mtu - ATA_HDR) / 512;
	if (maxscnt > 255)
		maxscnt = 255;
	identify(sectors);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "nullresp: %u.%u on %s, mtu %d, %d sectors per frame, bufcnt %d\n",
		shelf, slot, argv[optind + 2], mtu, maxscnt, bufcnt);

	if (batch)
		servem(s);
	serve1(s);
	return 0;
}
