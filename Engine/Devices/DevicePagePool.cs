using ILGPU;
using ILGPU.Runtime;

namespace TauCluster.Engine;

/// <summary>
/// A model's cache memory on a device, allocated once and handed out in pages of <see cref="PageTokens"/> tokens (every
/// layer and kv head of them), as vLLM's paged attention does: a session's cache grows a page at a time without moving
/// what it holds, and a session that ends gives its pages back to the next.
/// </summary>
internal sealed class DevicePagePool : IDisposable
{
    /// <summary>vLLM's default block size: a session wastes at most 15 positions of a page.</summary>
    public const int PageTokens = 16;

    private readonly IlgpuDevice device;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> memory;
    private readonly Stack<int> free;
    private readonly Lock gate = new();
    private bool disposed;

    private readonly string what;

    /// <summary>A pool of cache pages: <see cref="PageTokens"/> positions of every layer and kv head, [key, value] each.</summary>
    public DevicePagePool(IlgpuDevice device, ModelConfig config, int keyWidth, long bytes)
        : this(device, PageTokens * config.NLayer * config.NKvHead * (keyWidth + config.HeadDim), bytes, "cache pool")
    {
    }

    /// <summary>A pool of pages of <paramref name="pageFloats"/> floats each (<paramref name="what"/> names it in errors).</summary>
    public DevicePagePool(IlgpuDevice device, int pageFloats, long bytes, string what)
    {
        this.device = device;
        this.what = what;
        PageFloats = pageFloats;
        Pages = (int)Math.Min(int.MaxValue, bytes / (PageFloats * (long)sizeof(float)));
        if (Pages < 1) throw new InvalidOptionsException($"a device {what} of {bytes} bytes holds no page of {PageBytes} bytes");
        memory = device.Accelerator.Allocate1D<float>((long)Pages * PageFloats);
        free = new Stack<int>(Enumerable.Range(0, Pages).Reverse());
    }

    public int PageFloats { get; }
    public long PageBytes => PageFloats * (long)sizeof(float);
    public int Pages { get; }
    public ArrayView<float> View => memory.View;

    public int PagesInUse
    {
        get { lock (gate) return Pages - free.Count; }
    }

    public int Rent()
    {
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (free.TryPop(out int page)) return page;
        }
        throw new DeviceMemoryExhaustedException(
            $"the device's {what} is full: its {Pages} pages ({Pages * PageBytes / (1 << 20)} MiB) are held by live sessions");
    }

    public void Return(List<int> pages, int from)
    {
        lock (gate)
        {
            if (!disposed)
                for (int i = from; i < pages.Count; i++) free.Push(pages[i]);
        }
        pages.RemoveRange(from, pages.Count - from);
    }

    /// <summary>Where position <paramref name="position"/> of a stream (layer · Hkv + kv head) lies in its page: [stream][position in page][row].</summary>
    public static int SlotOffset(int stream, int position, int rowWidth) => (stream * PageTokens + position % PageTokens) * rowWidth;

    public float[] Download(int page)
    {
        var image = new float[PageFloats];
        lock (device.Gate) Page(page).CopyToCPU(image);
        return image;
    }

    public void Upload(int page, float[] image)
    {
        lock (device.Gate) Page(page).CopyFromCPU(image);
    }

    /// <summary>Page <paramref name="from"/>[i] into page <paramref name="to"/>[i], for every page of <paramref name="to"/>.</summary>
    public void Copy(IReadOnlyList<int> from, IReadOnlyList<int> to)
    {
        lock (device.Gate)
        {
            for (int i = 0; i < to.Count; i++) Page(from[i]).CopyTo(Page(to[i]));
            device.Accelerator.Synchronize();
        }
    }

    private ArrayView<float> Page(int page) => memory.View.SubView((long)page * PageFloats, PageFloats);

    public void Dispose()
    {
        lock (gate) disposed = true;
        memory.Dispose();
    }
}
