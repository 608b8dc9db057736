/** Every campaign `npm run fuzz` knows, in the order a full run takes them. */
import { ioctlCampaign } from './ioctl-campaign.js';
import { regionCampaign } from './region-campaign.js';
import { guestCampaign } from './guest-campaign.js';
import { migfsmCampaign } from './migfsm-campaign.js';
import { resumeCampaign } from './resume-campaign.js';
import { dmalogCampaign } from './dmalog-campaign.js';
import { v1regionCampaign } from './v1region-campaign.js';
import type { Campaign } from './runner.js';

// Each campaign has its own world and op types; the runner only needs the shared shape.
export const CAMPAIGNS: readonly Campaign<unknown, unknown>[] = [
  ioctlCampaign as Campaign<unknown, unknown>,
  regionCampaign as Campaign<unknown, unknown>,
  guestCampaign as Campaign<unknown, unknown>,
  migfsmCampaign as Campaign<unknown, unknown>,
  resumeCampaign as Campaign<unknown, unknown>,
  dmalogCampaign as Campaign<unknown, unknown>,
  v1regionCampaign as Campaign<unknown, unknown>,
];
