/**
 * The structs of linux/vfio.h as codecs with the C layout (LP64, little-endian). Names are the
 * C struct names without `struct `. Layouts follow the Linux 6.1 header, plus the structs
 * added later that migration needs (vfio_precopy_info 6.2, vfio_device_feature_mig_data_size
 * 6.3) and the explicit tail `pad` that later kernels spelled out in vfio_iommu_type1_info
 * (sizeof is 24 either way).
 *
 * `*_MINSZ` constants are the `offsetofend(struct, field)` values the kernel checks argsz
 * against before anything else; argsz below them is EINVAL.
 */
import { defineStruct, flex, offsetofend } from './codec.js';
import type { StructCodec } from './codec.js';

/** Decoded type of a codec. */
export type StructOf<C> = C extends StructCodec<infer T> ? T : never;

export const vfio_info_cap_header = defineStruct('vfio_info_cap_header', [
  ['id', 'u16'],
  ['version', 'u16'],
  ['next', 'u32'],
]);

export const vfio_group_status = defineStruct('vfio_group_status', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
]);

/** 6.1 layout: 20 bytes, no tail pad (caps after it therefore start 4-byte aligned). */
export const vfio_device_info = defineStruct('vfio_device_info', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['num_regions', 'u32'],
  ['num_irqs', 'u32'],
  ['cap_offset', 'u32'],
]);

export const vfio_region_info = defineStruct('vfio_region_info', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['index', 'u32'],
  ['cap_offset', 'u32'],
  ['size', 'u64'],
  ['offset', 'u64'],
]);

export const vfio_region_sparse_mmap_area = defineStruct('vfio_region_sparse_mmap_area', [
  ['offset', 'u64'],
  ['size', 'u64'],
]);

export const vfio_region_info_cap_sparse_mmap = defineStruct('vfio_region_info_cap_sparse_mmap', [
  ['header', vfio_info_cap_header],
  ['nr_areas', 'u32'],
  ['reserved', 'u32'],
  ['areas', flex(vfio_region_sparse_mmap_area)],
]);

export const vfio_region_info_cap_type = defineStruct('vfio_region_info_cap_type', [
  ['header', vfio_info_cap_header],
  ['type', 'u32'],
  ['subtype', 'u32'],
]);

/** Migration v1 region header (the data window follows at data_offset). */
export const vfio_device_migration_info = defineStruct('vfio_device_migration_info', [
  ['device_state', 'u32'],
  ['reserved', 'u32'],
  ['pending_bytes', 'u64'],
  ['data_offset', 'u64'],
  ['data_size', 'u64'],
]);

export const vfio_irq_info = defineStruct('vfio_irq_info', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['index', 'u32'],
  ['count', 'u32'],
]);

/** data[] holds `count` u8 (DATA_BOOL) or s32 (DATA_EVENTFD) entries. */
export const vfio_irq_set = defineStruct('vfio_irq_set', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['index', 'u32'],
  ['start', 'u32'],
  ['count', 'u32'],
  ['data', flex('u8')],
]);

/** 6.1 layout: group_id, not the later group_id/devid union. */
export const vfio_pci_dependent_device = defineStruct('vfio_pci_dependent_device', [
  ['group_id', 'u32'],
  ['segment', 'u16'],
  ['bus', 'u8'],
  ['devfn', 'u8'],
]);

export const vfio_pci_hot_reset_info = defineStruct('vfio_pci_hot_reset_info', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['count', 'u32'],
  ['devices', flex(vfio_pci_dependent_device)],
]);

export const vfio_pci_hot_reset = defineStruct('vfio_pci_hot_reset', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['count', 'u32'],
  ['group_fds', flex('s32')],
]);

export const vfio_device_ioeventfd = defineStruct('vfio_device_ioeventfd', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['offset', 'u64'],
  ['data', 'u64'],
  ['fd', 's32'],
]);

export const vfio_device_feature = defineStruct('vfio_device_feature', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['data', flex('u8')],
]);

export const vfio_device_feature_migration = defineStruct('vfio_device_feature_migration', [
  ['flags', 'u64'],
]);

export const vfio_device_feature_mig_state = defineStruct('vfio_device_feature_mig_state', [
  ['device_state', 'u32'],
  ['data_fd', 's32'],
]);

export const vfio_device_low_power_entry_with_wakeup = defineStruct(
  'vfio_device_low_power_entry_with_wakeup',
  [
    ['wakeup_eventfd', 's32'],
    ['reserved', 'u32'],
  ],
);

/** `ranges` is a user pointer to num_ranges vfio_device_feature_dma_logging_range. */
export const vfio_device_feature_dma_logging_control = defineStruct(
  'vfio_device_feature_dma_logging_control',
  [
    ['page_size', 'u64'],
    ['num_ranges', 'u32'],
    ['__reserved', 'u32'],
    ['ranges', 'u64'],
  ],
);

export const vfio_device_feature_dma_logging_range = defineStruct('vfio_device_feature_dma_logging_range', [
  ['iova', 'u64'],
  ['length', 'u64'],
]);

/** `bitmap` is a user pointer to u64 words. */
export const vfio_device_feature_dma_logging_report = defineStruct(
  'vfio_device_feature_dma_logging_report',
  [
    ['iova', 'u64'],
    ['length', 'u64'],
    ['page_size', 'u64'],
    ['bitmap', 'u64'],
  ],
);

/** Since 6.3. */
export const vfio_device_feature_mig_data_size = defineStruct('vfio_device_feature_mig_data_size', [
  ['stop_copy_length', 'u64'],
]);

/** Since 6.2: answer of VFIO_MIG_GET_PRECOPY_INFO. */
export const vfio_precopy_info = defineStruct('vfio_precopy_info', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['initial_bytes', 'u64'],
  ['dirty_bytes', 'u64'],
]);

export const vfio_iommu_type1_info = defineStruct('vfio_iommu_type1_info', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['iova_pgsizes', 'u64'],
  ['cap_offset', 'u32'],
  ['pad', 'u32'],
]);

export const vfio_iova_range = defineStruct('vfio_iova_range', [
  ['start', 'u64'],
  ['end', 'u64'],
]);

export const vfio_iommu_type1_info_cap_iova_range = defineStruct('vfio_iommu_type1_info_cap_iova_range', [
  ['header', vfio_info_cap_header],
  ['nr_iovas', 'u32'],
  ['reserved', 'u32'],
  ['iova_ranges', flex(vfio_iova_range)],
]);

export const vfio_iommu_type1_info_cap_migration = defineStruct('vfio_iommu_type1_info_cap_migration', [
  ['header', vfio_info_cap_header],
  ['flags', 'u32'],
  ['pgsize_bitmap', 'u64'],
  ['max_dirty_bitmap_size', 'u64'],
]);

export const vfio_iommu_type1_info_dma_avail = defineStruct('vfio_iommu_type1_info_dma_avail', [
  ['header', vfio_info_cap_header],
  ['avail', 'u32'],
]);

export const vfio_iommu_type1_dma_map = defineStruct('vfio_iommu_type1_dma_map', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['vaddr', 'u64'],
  ['iova', 'u64'],
  ['size', 'u64'],
]);

/** `data` is a user pointer (`__u64 *` on LP64) to the bitmap words. */
export const vfio_bitmap = defineStruct('vfio_bitmap', [
  ['pgsize', 'u64'],
  ['size', 'u64'],
  ['data', 'u64'],
]);

/** With GET_DIRTY_BITMAP, data[] holds one vfio_bitmap. */
export const vfio_iommu_type1_dma_unmap = defineStruct('vfio_iommu_type1_dma_unmap', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['iova', 'u64'],
  ['size', 'u64'],
  ['data', flex('u8')],
]);

/** With GET_BITMAP, data[] holds one vfio_iommu_type1_dirty_bitmap_get. */
export const vfio_iommu_type1_dirty_bitmap = defineStruct('vfio_iommu_type1_dirty_bitmap', [
  ['argsz', 'u32'],
  ['flags', 'u32'],
  ['data', flex('u8')],
]);

export const vfio_iommu_type1_dirty_bitmap_get = defineStruct('vfio_iommu_type1_dirty_bitmap_get', [
  ['iova', 'u64'],
  ['size', 'u64'],
  ['bitmap', vfio_bitmap],
]);

/** Every codec above by C name, for table-driven layout checks. */
export const VFIO_STRUCTS = {
  vfio_info_cap_header,
  vfio_group_status,
  vfio_device_info,
  vfio_region_info,
  vfio_region_sparse_mmap_area,
  vfio_region_info_cap_sparse_mmap,
  vfio_region_info_cap_type,
  vfio_device_migration_info,
  vfio_irq_info,
  vfio_irq_set,
  vfio_pci_dependent_device,
  vfio_pci_hot_reset_info,
  vfio_pci_hot_reset,
  vfio_device_ioeventfd,
  vfio_device_feature,
  vfio_device_feature_migration,
  vfio_device_feature_mig_state,
  vfio_device_low_power_entry_with_wakeup,
  vfio_device_feature_dma_logging_control,
  vfio_device_feature_dma_logging_range,
  vfio_device_feature_dma_logging_report,
  vfio_device_feature_mig_data_size,
  vfio_precopy_info,
  vfio_iommu_type1_info,
  vfio_iova_range,
  vfio_iommu_type1_info_cap_iova_range,
  vfio_iommu_type1_info_cap_migration,
  vfio_iommu_type1_info_dma_avail,
  vfio_iommu_type1_dma_map,
  vfio_bitmap,
  vfio_iommu_type1_dma_unmap,
  vfio_iommu_type1_dirty_bitmap,
  vfio_iommu_type1_dirty_bitmap_get,
} as const;

/* minsz values: the kernel reads this much of the user struct and rejects a smaller argsz. */

/** offsetofend(vfio_group_status, flags) = 8 */
export const VFIO_GROUP_STATUS_MINSZ = offsetofend(vfio_group_status, 'flags');
/** offsetofend(vfio_device_info, num_irqs) = 16 */
export const VFIO_DEVICE_INFO_MINSZ = offsetofend(vfio_device_info, 'num_irqs');
/**
 * offsetofend(vfio_device_info, cap_offset) = 20: with argsz at least this, GET_INFO also
 * copies cap_offset back (the kernel spells it via vfio_iommu_type1_info, same value).
 */
export const VFIO_DEVICE_INFO_CAPSZ = offsetofend(vfio_device_info, 'cap_offset');
/** offsetofend(vfio_region_info, offset) = 32 */
export const VFIO_REGION_INFO_MINSZ = offsetofend(vfio_region_info, 'offset');
/** offsetofend(vfio_irq_info, count) = 16 */
export const VFIO_IRQ_INFO_MINSZ = offsetofend(vfio_irq_info, 'count');
/** offsetofend(vfio_irq_set, count) = 20 */
export const VFIO_IRQ_SET_MINSZ = offsetofend(vfio_irq_set, 'count');
/** offsetofend(vfio_pci_hot_reset_info, count) = 12 */
export const VFIO_PCI_HOT_RESET_INFO_MINSZ = offsetofend(vfio_pci_hot_reset_info, 'count');
/** offsetofend(vfio_pci_hot_reset, count) = 12 */
export const VFIO_PCI_HOT_RESET_MINSZ = offsetofend(vfio_pci_hot_reset, 'count');
/** offsetofend(vfio_device_ioeventfd, fd) = 28 */
export const VFIO_DEVICE_IOEVENTFD_MINSZ = offsetofend(vfio_device_ioeventfd, 'fd');
/** offsetofend(vfio_device_feature, flags) = 8 */
export const VFIO_DEVICE_FEATURE_MINSZ = offsetofend(vfio_device_feature, 'flags');
/** offsetofend(vfio_precopy_info, dirty_bytes) = 24 */
export const VFIO_PRECOPY_INFO_MINSZ = offsetofend(vfio_precopy_info, 'dirty_bytes');
/** offsetofend(vfio_iommu_type1_info, iova_pgsizes) = 16 */
export const VFIO_IOMMU_TYPE1_INFO_MINSZ = offsetofend(vfio_iommu_type1_info, 'iova_pgsizes');
/** offsetofend(vfio_iommu_type1_dma_map, size) = 32 */
export const VFIO_IOMMU_TYPE1_DMA_MAP_MINSZ = offsetofend(vfio_iommu_type1_dma_map, 'size');
/** offsetofend(vfio_iommu_type1_dma_unmap, size) = 24 */
export const VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ = offsetofend(vfio_iommu_type1_dma_unmap, 'size');
/** offsetofend(vfio_iommu_type1_dirty_bitmap, flags) = 8 */
export const VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ = offsetofend(vfio_iommu_type1_dirty_bitmap, 'flags');
/**
 * UNMAP_DMA with GET_DIRTY_BITMAP: the fixed part plus one vfio_bitmap in data[] = 48.
 */
export const VFIO_IOMMU_TYPE1_DMA_UNMAP_BITMAP_MINSZ =
  VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ + vfio_bitmap.size;
/**
 * DIRTY_PAGES with GET_BITMAP: the fixed part plus one vfio_iommu_type1_dirty_bitmap_get = 48.
 */
export const VFIO_IOMMU_TYPE1_DIRTY_BITMAP_GET_MINSZ =
  VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ + vfio_iommu_type1_dirty_bitmap_get.size;
