namespace TauCluster.Engine;

/// <summary>
/// A session's decode cache on a device: per layer and kv head, λk (tau) or k (causal) and v for every position, in
/// pages of its model's <see cref="DevicePagePool"/>. The device's kernels write and read it; the host keeps only the
/// page ids. Tau attends through the λ index over its sealed segments (<see cref="DeviceLambdaIndex"/>) and densely over
/// the positions after them; causal attention, and tau on <see cref="TauAttentionPath.Dense"/>, densely over all.
/// </summary>
public sealed class DeviceCache : AttentionCache
{
    private readonly DeviceModel owner;
    private readonly List<int> pages = [];
    /// <summary>Index pages of the sealed segments, one a segment, in position order (<see cref="DeviceLambdaIndex"/>).</summary>
    private readonly List<int> segments = [];
    /// <summary>Pages the host is filling (<see cref="Append"/>), uploaded at <see cref="Settle"/>.</summary>
    private readonly Dictionary<int, float[]> staged = [];
    private bool released;

    internal DeviceCache(DeviceModel owner, TaumodeSpec? domain, bool indexed) : base(owner.Model.Config)
    {
        this.owner = owner;
        Domain = domain;
        Indexed = indexed;
        DomainIndex = domain is null ? -1 : owner.DomainIndex(domain);
    }

    public TaumodeSpec? Domain { get; }

    /// <summary>Whether tau attention goes through the λ index over sealed segments (else densely over every λk).</summary>
    public bool Indexed { get; }
    internal int DomainIndex { get; }
    internal IReadOnlyList<int> PageIds => pages;
    internal IReadOnlyList<int> SegmentIds => segments;

    /// <summary>Seals every segment whose positions are all cached (a pass's rows all come after them).</summary>
    internal void SealSegments()
    {
        if (!Indexed) return;
        while (segments.Count < Length / DeviceLambdaIndex.SegmentSize) segments.Add(owner.Seal(this, segments.Count));
    }

    public override long Bytes => (long)Length * Config.NLayer * Config.NKvHead * (owner.KeyWidth + Config.HeadDim) * sizeof(float);

    /// <summary>Device memory the session holds: its pages, whole.</summary>
    public long DeviceBytes => pages.Count * owner.Pages.PageBytes + segments.Count * (owner.Index?.PageBytes ?? 0);

    public override void Reserve(int tokens) => EnsurePages(tokens);

    /// <summary>Rents pages until <paramref name="tokens"/> positions have one (a full pool is a typed error; nothing changes).</summary>
    internal void EnsurePages(int tokens)
    {
        ObjectDisposedException.ThrowIf(released, this);
        int needed = (Math.Min(tokens, Config.SequenceLen) + DevicePagePool.PageTokens - 1) / DevicePagePool.PageTokens;
        int had = pages.Count;
        try
        {
            while (pages.Count < needed) pages.Add(owner.Pages.Rent());
        }
        catch (DeviceMemoryExhaustedException)
        {
            owner.Pages.Return(pages, had);
            throw;
        }
    }

    public override void Truncate(int tokens)
    {
        base.Truncate(tokens);
        staged.Clear();
        owner.Pages.Return(pages, (Length + DevicePagePool.PageTokens - 1) / DevicePagePool.PageTokens);
        if (owner.Index is { } index) index.Return(segments, Math.Min(segments.Count, Length / DeviceLambdaIndex.SegmentSize));
    }

    public override AttentionCache CopyPrefix(int length)
    {
        Settle();
        SealSegments();   // once here rather than once in every copy
        length = Math.Clamp(length, 0, Length);
        var copy = new DeviceCache(owner, Domain, Indexed);
        copy.EnsurePages(length);
        owner.CopyPages(pages, copy.pages);
        int sealedCopies = Math.Min(segments.Count, length / DeviceLambdaIndex.SegmentSize);
        try
        {
            for (int i = 0; i < sealedCopies; i++) copy.segments.Add(owner.Index!.Rent());
        }
        catch (DeviceMemoryExhaustedException)
        {
            copy.Release();
            throw;
        }
        owner.CopyIndexPages(segments, copy.segments);
        copy.Length = length;
        return copy;
    }

    /// <summary>
    /// Caches one token's key and value at position <see cref="AttentionCache.Length"/> from the host (synthetic fills):
    /// into a host copy of its page, uploaded with the others at <see cref="Settle"/>.
    /// </summary>
    internal override void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        int position = Length, pageIndex = position / DevicePagePool.PageTokens;
        EnsurePages(position + 1);
        if (!staged.TryGetValue(pageIndex, out var image))
            staged[pageIndex] = image = position % DevicePagePool.PageTokens == 0 ? new float[owner.Pages.PageFloats] : owner.DownloadPage(pages[pageIndex]);
        int width = owner.KeyWidth + Config.HeadDim;
        var slot = image.AsSpan((Stream(layer, kvHead) * DevicePagePool.PageTokens + position % DevicePagePool.PageTokens) * width, width);
        if (Domain is null) key.CopyTo(slot);
        else slot[0] = Taumode.Lambda(key, Domain.Laplacian, Domain.Settings);
        value.CopyTo(slot[owner.KeyWidth..]);
    }

    internal override void Settle()
    {
        foreach (var (pageIndex, image) in staged) owner.UploadPage(pages[pageIndex], image);
        staged.Clear();
    }

    /// <summary>Every cached key (or λk) and value of a layer and kv head, position by position, read back from the device (checks).</summary>
    internal (float[] Keys, float[] Values) Read(int layer, int kvHead)
    {
        Settle();
        int keyWidth = owner.KeyWidth, width = keyWidth + Config.HeadDim;
        var keys = new float[Length * keyWidth];
        var values = new float[Length * Config.HeadDim];
        for (int page = 0; page * DevicePagePool.PageTokens < Length; page++)
        {
            var image = owner.DownloadPage(pages[page]);
            for (int i = 0; i < DevicePagePool.PageTokens && page * DevicePagePool.PageTokens + i < Length; i++)
            {
                int j = page * DevicePagePool.PageTokens + i;
                var slot = image.AsSpan((Stream(layer, kvHead) * DevicePagePool.PageTokens + i) * width, width);
                slot[..keyWidth].CopyTo(keys.AsSpan(j * keyWidth));
                slot[keyWidth..].CopyTo(values.AsSpan(j * Config.HeadDim));
            }
        }
        return (keys, values);
    }

    internal override void Attend(int layer, int head, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output) =>
        throw new NotSupportedException("a device cache is attended by its device's kernels");

    /// <summary>Gives the session's pages back to the pool; the cache is unusable after.</summary>
    public void Release()
    {
        if (released) return;
        released = true;
        GC.SuppressFinalize(this);
        ReturnAll();
    }

    /// <summary>A session dropped without <see cref="Release"/> still gives its pages back, later.</summary>
    ~DeviceCache() => ReturnAll();

    private void ReturnAll()
    {
        owner.Pages.Return(pages, 0);
        owner.Index?.Return(segments, 0);
    }
}
