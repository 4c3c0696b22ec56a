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

    /// <summary>
    /// Seals every segment whose positions are all cached (a pass's rows all come after them): its λ index
    /// (<see cref="DeviceLambdaIndex"/>), built on the host from its pages, read back once for every stream, into an
    /// index page of its own.
    /// </summary>
    internal void SealSegments()
    {
        if (!Indexed || segments.Count == Length / DeviceLambdaIndex.SegmentSize) return;   // every pass asks; one in 1,024 seals
        int D = Config.HeadDim, streams = Config.NLayer * Config.NKvHead, streamFloats = owner.IndexStreamFloats;
        var lambdas = new float[DeviceLambdaIndex.SegmentSize];
        var values = new float[DeviceLambdaIndex.SegmentSize * D];
        while (segments.Count < Length / DeviceLambdaIndex.SegmentSize)
        {
            var images = DownloadPages(segments.Count * DeviceLambdaIndex.SegmentSize, DeviceLambdaIndex.SegmentSize);
            var index = new float[owner.Index!.PageFloats];
            for (int stream = 0; stream < streams; stream++)
            {
                CopyStream(images, stream, DeviceLambdaIndex.SegmentSize, lambdas, values);
                DeviceLambdaIndex.Build(lambdas, values, D, Domain!.Temperature, index.AsSpan(stream * streamFloats, streamFloats));
            }
            int page = owner.Index.Rent();
            owner.Index.Upload(page, index);
            segments.Add(page);
        }
    }

    /// <summary>The pages of positions [first, first + count), first on a page boundary, read back from the device.</summary>
    private float[][] DownloadPages(int first, int count) =>
        Enumerable.Range(first / DevicePagePool.PageTokens, (count + DevicePagePool.PageTokens - 1) / DevicePagePool.PageTokens)
            .Select(page => owner.Pages.Download(pages[page])).ToArray();

    /// <summary>One stream's keys (or λk) and values of the first <paramref name="count"/> positions of <paramref name="images"/>.</summary>
    private void CopyStream(float[][] images, int stream, int count, Span<float> keys, Span<float> values)
    {
        int keyWidth = owner.KeyWidth, width = keyWidth + Config.HeadDim;
        for (int j = 0; j < count; j++)
        {
            var slot = images[j / DevicePagePool.PageTokens].AsSpan(DevicePagePool.SlotOffset(stream, j, width), width);
            slot[..keyWidth].CopyTo(keys[(j * keyWidth)..]);
            slot[keyWidth..].CopyTo(values[(j * Config.HeadDim)..]);
        }
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
        Settle();   // what a synthetic fill staged below the cut stays
        base.Truncate(tokens);
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
        owner.Pages.Copy(pages, copy.pages);
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
        owner.Index?.Copy(segments, copy.segments);
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
            staged[pageIndex] = image = position % DevicePagePool.PageTokens == 0 ? new float[owner.Pages.PageFloats] : owner.Pages.Download(pages[pageIndex]);
        int width = owner.KeyWidth + Config.HeadDim;
        var slot = image.AsSpan(DevicePagePool.SlotOffset(Stream(layer, kvHead), position, width), width);
        if (Domain is null) key.CopyTo(slot);
        else slot[0] = Domain.KeyLambda(layer, kvHead, key);
        value.CopyTo(slot[owner.KeyWidth..]);
    }

    internal override void Settle()
    {
        foreach (var (pageIndex, image) in staged) owner.Pages.Upload(pages[pageIndex], image);
        staged.Clear();
    }

    /// <summary>Every cached key (or λk) and value of a layer and kv head, position by position, read back from the device (checks).</summary>
    internal (float[] Keys, float[] Values) Read(int layer, int kvHead)
    {
        Settle();
        var keys = new float[Length * owner.KeyWidth];
        var values = new float[Length * Config.HeadDim];
        CopyStream(DownloadPages(0, Length), Stream(layer, kvHead), Length, keys, values);
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
