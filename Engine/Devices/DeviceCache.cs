namespace TauCluster.Engine;

/// <summary>
/// A session's decode cache on a device: per layer and kv head, λk (tau) or k (causal) and v for every position, in
/// pages of its model's <see cref="DevicePagePool"/>. The device's kernels write and read it; the host keeps only the
/// page ids. Attention over it is dense (every cached λk, in the kernel's tiles).
/// </summary>
public sealed class DeviceCache : AttentionCache
{
    private readonly DeviceModel owner;
    private readonly List<int> pages = [];
    /// <summary>Pages the host is filling (<see cref="Append"/>), uploaded at <see cref="Settle"/>.</summary>
    private readonly Dictionary<int, float[]> staged = [];
    private bool released;

    internal DeviceCache(DeviceModel owner, TaumodeSpec? domain) : base(owner.Model.Config)
    {
        this.owner = owner;
        Domain = domain;
        DomainIndex = domain is null ? -1 : owner.DomainIndex(domain);
    }

    public TaumodeSpec? Domain { get; }
    internal int DomainIndex { get; }
    internal IReadOnlyList<int> PageIds => pages;

    public override long Bytes => (long)Length * Config.NLayer * Config.NKvHead * (owner.KeyWidth + Config.HeadDim) * sizeof(float);

    /// <summary>Device memory the session holds: its pages, whole.</summary>
    public long DeviceBytes => pages.Count * owner.Pages.PageBytes;

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
    }

    public override AttentionCache CopyPrefix(int length)
    {
        Settle();
        length = Math.Clamp(length, 0, Length);
        var copy = new DeviceCache(owner, Domain);
        copy.EnsurePages(length);
        owner.CopyPages(pages, copy.pages);
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
        owner.Pages.Return(pages, 0);
    }

    /// <summary>A session dropped without <see cref="Release"/> still gives its pages back, later.</summary>
    ~DeviceCache() => owner.Pages.Return(pages, 0);
}
