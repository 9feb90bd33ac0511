//! [`Layout`]: how a blob is cut into chunks and how the hash tree over them is shaped, and
//! [`build`]: the pieces of a local blob.

use bytes::Bytes;

use super::wire::{BlobId, BlobMeta, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, PieceIndex};

/// Largest blob the layout accepts, in bytes: 2⁴⁰ (1 TiB). A node's own limit
/// ([`BlobConfig::max_blob_size`](super::BlobConfig::max_blob_size)) is usually far lower.
pub const MAX_BLOB_SIZE: u64 = 1 << 40;

/// Most levels of a hash tree (data included): with the smallest chunk (64 bytes, 2 hashes
/// per page) a 1 TiB blob needs 36.
pub const MAX_LEVELS: usize = 48;

/// Why a [`BlobMeta`] (or a local blob) cannot be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The chunk size is not a multiple of 32 within `MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE`.
    #[error("chunk size {0} is not a multiple of 32 between 64 and 65,024 bytes")]
    ChunkSize(u32),
    /// The blob is larger than the limit (the layout's [`MAX_BLOB_SIZE`] or the node's).
    #[error("blob of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The blob's size, in bytes.
        size: u64,
        /// The limit, in bytes.
        max: u64,
    },
}

/// The shape of a blob's hash tree.
///
/// ```text
///  level 2 (top)           [ h(p1,0) h(p1,1) ]            <- its SHA-256 is the root
///                           /                \
///  level 1     [ h(c0) .. h(c38) ]   [ h(c39) .. h(c77) ]  <- pages of 39 hashes
///                /    ...   \          /     ...    \
///  level 0    c0  c1  ...  c38       c39   ...     c77     <- chunks of 1,248 bytes
/// ```
///
/// Level 0 holds the data in chunks of `chunk_size` bytes (the last one shorter; an empty
/// blob has one empty chunk). Each higher level holds pages of the SHA-256 hashes of up to
/// `fanout = chunk_size / 32` consecutive pieces of the level below, so a page is never
/// longer than a chunk and every piece fits one datagram. Levels are added until one holds
/// a single page (there is always at least level 1); the SHA-256 of that top page is the
/// tree's root. A 10 MiB blob with 1,248-byte chunks has 8,403 chunks, 216 + 6 + 1 pages
/// (2.7 % more bytes) and 4 levels.
///
/// The manifest of the blob (its ordered chunk hashes and total size) is thus level 1 (the
/// chunk hashes, in pages) plus the [`BlobMeta`]; it is fetched page by page, each page
/// verified against its parent before any piece it names is requested. The blob id is the
/// SHA-256 of the whole bytes, which the fetcher checks at the end; the root is what lets it
/// verify every piece on arrival (BitTorrent v2 and IPFS use the same shape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    size: u64,
    chunk_size: u32,
    counts: Vec<u32>,
}

impl Layout {
    /// The layout of a blob of `size` bytes in chunks of `chunk_size` bytes.
    ///
    /// # Errors
    /// [`LayoutError::ChunkSize`] for a chunk size that is not a multiple of 32 in
    /// 64..=65,024; [`LayoutError::TooLarge`] above [`MAX_BLOB_SIZE`] or above 2³² − 1
    /// chunks.
    pub fn new(size: u64, chunk_size: u32) -> Result<Layout, LayoutError> {
        let c = chunk_size as usize;
        if c % 32 != 0 || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&c) {
            return Err(LayoutError::ChunkSize(chunk_size));
        }
        if size > MAX_BLOB_SIZE {
            return Err(LayoutError::TooLarge {
                size,
                max: MAX_BLOB_SIZE,
            });
        }
        let fanout = u64::from(chunk_size / 32);
        let chunks = size.div_ceil(u64::from(chunk_size)).max(1);
        if chunks > u64::from(u32::MAX) {
            // Piece indexes are `u32`: at most 2³² − 1 chunks.
            return Err(LayoutError::TooLarge {
                size,
                max: u64::from(u32::MAX) * u64::from(chunk_size),
            });
        }
        let mut counts = vec![u32::try_from(chunks).unwrap_or(u32::MAX)];
        let mut n = chunks;
        loop {
            n = n.div_ceil(fanout);
            counts.push(u32::try_from(n).unwrap_or(u32::MAX));
            if n == 1 {
                break;
            }
        }
        Ok(Layout {
            size,
            chunk_size,
            counts,
        })
    }

    /// The layout a [`BlobMeta`] describes.
    ///
    /// # Errors
    /// As [`Layout::new`].
    pub fn of(meta: &BlobMeta) -> Result<Layout, LayoutError> {
        Layout::new(meta.size, meta.chunk_size)
    }

    /// The blob's length, in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Hashes per page: `chunk_size / 32`.
    pub fn fanout(&self) -> u32 {
        self.chunk_size / 32
    }

    /// Number of levels, data included (≥ 2).
    pub fn levels(&self) -> usize {
        self.counts.len()
    }

    /// The top level (holding one page).
    pub fn top(&self) -> u8 {
        u8::try_from(self.counts.len() - 1).unwrap_or(u8::MAX)
    }

    /// Pieces at `level` (0 beyond the top).
    pub fn count(&self, level: u8) -> u32 {
        self.counts.get(usize::from(level)).copied().unwrap_or(0)
    }

    /// Pieces of the whole tree, data and pages.
    pub fn total_pieces(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    /// Whether `piece` exists in this tree.
    pub fn contains(&self, piece: PieceIndex) -> bool {
        piece.index < self.count(piece.level)
    }

    /// Length of `piece`, in bytes: a full chunk, the rest of the blob for the last chunk, or
    /// 32 bytes per hash of a page. 0 for a piece outside the tree.
    pub fn piece_len(&self, piece: PieceIndex) -> usize {
        if !self.contains(piece) {
            return 0;
        }
        if piece.level == 0 {
            let start = u64::from(piece.index) * u64::from(self.chunk_size);
            let len = self
                .size
                .saturating_sub(start)
                .min(u64::from(self.chunk_size));
            return usize::try_from(len).unwrap_or(0);
        }
        let below = self.count(piece.level - 1);
        let first = piece.index.saturating_mul(self.fanout());
        let hashes = below.saturating_sub(first).min(self.fanout());
        hashes as usize * 32
    }

    /// The page above `piece` and the slot of its hash in that page; `None` for the top page.
    pub fn parent(&self, piece: PieceIndex) -> Option<(PieceIndex, usize)> {
        if piece.level >= self.top() {
            return None;
        }
        let parent = PieceIndex {
            level: piece.level + 1,
            index: piece.index / self.fanout(),
        };
        Some((parent, (piece.index % self.fanout()) as usize))
    }

    /// The pieces a page names, in order (empty for a chunk).
    pub fn children(&self, page: PieceIndex) -> impl Iterator<Item = PieceIndex> + use<> {
        let (level, first, n) = if page.level == 0 || !self.contains(page) {
            (0, 0, 0)
        } else {
            let first = page.index.saturating_mul(self.fanout());
            let n = (self.piece_len(page) / 32) as u32;
            (page.level - 1, first, n)
        };
        (first..first.saturating_add(n)).map(move |index| PieceIndex { level, index })
    }
}

/// A local blob cut into pieces: what [`build`] returns.
#[derive(Clone, Debug)]
pub struct Built {
    /// SHA-256 of the bytes.
    pub id: BlobId,
    /// Size, chunk size and root.
    pub meta: BlobMeta,
    /// Every piece of the tree, data first (level 0 ascending, then level 1, ...).
    pub pieces: Vec<(PieceIndex, Bytes)>,
}

/// Cuts `bytes` into chunks of `chunk_size` bytes and builds the hash tree over them.
///
/// # Errors
/// As [`Layout::new`].
pub fn build(bytes: &Bytes, chunk_size: u32) -> Result<Built, LayoutError> {
    let layout = Layout::new(bytes.len() as u64, chunk_size)?;
    let mut pieces = Vec::with_capacity(usize::try_from(layout.total_pieces()).unwrap_or(0));
    let mut level_hashes: Vec<[u8; 32]> = Vec::with_capacity(layout.count(0) as usize);
    for index in 0..layout.count(0) {
        let start = index as usize * chunk_size as usize;
        let end = (start + chunk_size as usize).min(bytes.len());
        let chunk = bytes.slice(start.min(end)..end);
        level_hashes.push(gossip_crypto::sha256(&chunk));
        pieces.push((PieceIndex { level: 0, index }, chunk));
    }
    let mut root = [0u8; 32];
    for level in 1..=layout.top() {
        let mut next = Vec::with_capacity(layout.count(level) as usize);
        for (index, group) in level_hashes.chunks(layout.fanout() as usize).enumerate() {
            let page: Vec<u8> = group.iter().flatten().copied().collect();
            let hash = gossip_crypto::sha256(&page);
            next.push(hash);
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            pieces.push((PieceIndex { level, index }, Bytes::from(page)));
        }
        if level == layout.top() {
            root = next[0];
        }
        level_hashes = next;
    }
    Ok(Built {
        id: BlobId::of(bytes),
        meta: BlobMeta {
            size: layout.size(),
            chunk_size,
            root,
        },
        pieces,
    })
}
