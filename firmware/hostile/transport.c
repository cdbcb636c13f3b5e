/*
 * hostile: cases against the virtio-mmio transport of a running device rather
 * than one request: the queue resized after DRIVER_OK, notification storms
 * (also for queues that do not exist), a reset while a request is in flight, and
 * config-space writes over the whole 4 KiB window. After each the VMM must still
 * be up and the device either keep working or ask for a reset.
 */
#include "hostile.h"

/* A valid 4 KiB read of sector 0 as a three-descriptor chain at head 0. */
static void post_read(void)
{
	header(T_IN, 0);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set(&q.desc[1], MEM_BUF, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set(&q.desc[2], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

void c_queue_num_after_driver_ok(void)
{
	/* The spec allows QueueNum writes only before QueueReady; a device that took
	 * them would index its rings with the new size. */
	vwrite(dev, VMMIO_QUEUE_SEL, 0);
	vwrite(dev, VMMIO_QUEUE_NUM, 8);
	vwrite(dev, VMMIO_QUEUE_NUM, 32768);
	vwrite(dev, VMMIO_QUEUE_NUM, 0);
	vwrite(dev, VMMIO_QUEUE_NUM, q.num);
	post_read();
	run("queue-size-changed-while-running", 0, 0);
}

void c_notification_storm(void)
{
	post_read();
	vq_push(&q, 0);
	vq_kick(&q);
	for (int i = 0; i < 20000; i++)
		vwrite(dev, VMMIO_QUEUE_NOTIFY, 0);
	/* Queues that do not exist, and an index far out of range. */
	for (uint32_t i = 0; i < 2000; i++)
		vwrite(dev, VMMIO_QUEUE_NOTIFY, i % 2 ? 0xffff : 1 + i % 7);
	uint32_t id, len;
	int done = vq_wait(&q, &id, &len, 2000);
	uint32_t ds = vread(dev, VMMIO_STATUS);
	printf("hostile: case notification-storm: %s, status %u%s\n", done ? "completed" : "no completion", *status,
	       ds & VSTAT_NEEDS_RESET ? ", NEEDS_RESET" : "");
	cases++;
}

void c_reset_mid_request(void)
{
	/* A 256 KiB write, then a reset at once: the device must finish or drop it,
	 * never write guest memory of a device that is gone or take the VMM down. */
	header(T_OUT, 2048);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set(&q.desc[1], MEM_BUF, 256 * 1024, VIRTQ_DESC_F_NEXT, 2);
	set(&q.desc[2], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	vq_push(&q, 0);
	vq_kick(&q);
	vwrite(dev, VMMIO_STATUS, 0);
	uint32_t after = vread(dev, VMMIO_STATUS);
	uint64_t t0 = rdtsc(), lim = ms_to_tsc(300);
	while (rdtsc() - t0 < lim)
		cpu_relax();
	printf("hostile: case reset-mid-request: device status after reset 0x%x\n", after);
	cases++;
}

void c_giant_config_write(void)
{
	/* virtio-blk's config is read-only and 60 bytes; write the whole window. */
	uint32_t capacity_lo = vread(dev, VMMIO_CONFIG), capacity_hi = vread(dev, VMMIO_CONFIG + 4);
	for (uint32_t off = VMMIO_CONFIG; off < 0x1000; off += 4)
		vwrite(dev, off, 0xffffffffu);
	for (uint32_t off = VMMIO_CONFIG; off < 0x1000; off++)
		mmio_write8(dev->base + off, 0xa5);
	int same = vread(dev, VMMIO_CONFIG) == capacity_lo && vread(dev, VMMIO_CONFIG + 4) == capacity_hi;
	post_read();
	run(same ? "giant-config-write (capacity unchanged)" : "giant-config-write (CAPACITY CHANGED)", 0, 0);
}
